import { lstatSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** Caps on what one plugin directory may hold; exceeding one is a validation error, never a crash. */
export interface FileLimits {
  /** Largest plugin.toml read. Default 64 KiB. */
  maxManifestBytes: number;
  /** Largest single file. Default 256 MiB. */
  maxFileBytes: number;
  /** Largest sum of all files. Default 1 GiB. */
  maxPluginBytes: number;
  /** Most entries (files, directories, links) walked. Default 10,000. */
  maxFiles: number;
  /** Deepest directory nesting below the plugin directory. Default 16. */
  maxDepth: number;
}

export const DEFAULT_FILE_LIMITS: Readonly<FileLimits> = Object.freeze({
  maxManifestBytes: 64 * 1024,
  maxFileBytes: 256 * 1024 * 1024,
  maxPluginBytes: 1024 * 1024 * 1024,
  maxFiles: 10_000,
  maxDepth: 16,
});

export type PluginFileKind = 'file' | 'directory' | 'symlink' | 'special';

export interface PluginFile {
  /** Relative to the plugin directory, with `/` separators. */
  path: string;
  kind: PluginFileKind;
  size: number;
  mode: number;
  /** For symlinks: where the link resolves (real path), or, when dangling, where it lexically points. */
  linkTarget?: string;
  /** For symlinks: whether `linkTarget` lies inside the plugin directory. */
  linkInside?: boolean;
  dangling?: boolean;
}

/** What a plugin directory holds, as seen by one walk that never follows links. */
export interface PluginInventory {
  /** The plugin directory's real path. */
  root: string;
  rootMode: number;
  files: PluginFile[];
  totalBytes: number;
  /** Set when the walk stopped at a cap; the inventory is then incomplete. */
  stoppedAt?: 'too_many_files' | 'too_deep';
}

/**
 * Walks `root` (already a real path) without following symlinks. Only the caps in `limits` that bound the walk
 * itself (file count, depth) stop it; sizes and modes are recorded for the SecurityRule to judge.
 */
export function inventoryPlugin(root: string, limits: FileLimits): PluginInventory {
  const rootStat = lstatSync(root);
  const inventory: PluginInventory = { root, rootMode: rootStat.mode, files: [], totalBytes: 0 };
  const prefix = root.endsWith(sep) ? root : root + sep;
  const walk = (dir: string, depth: number): boolean => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return true; // unreadable subdirectory: nothing of it can be loaded either
    }
    names.sort();
    for (const name of names) {
      if (inventory.files.length >= limits.maxFiles) {
        inventory.stoppedAt = 'too_many_files';
        return false;
      }
      const abs = join(dir, name);
      let st: Stats;
      try {
        st = lstatSync(abs);
      } catch {
        continue; // vanished while we walked
      }
      const path = relative(root, abs).split(sep).join('/');
      const entry: PluginFile = { path, kind: kindOf(st), size: st.size, mode: st.mode };
      inventory.files.push(entry);
      if (entry.kind === 'file') inventory.totalBytes += st.size;
      else if (entry.kind === 'symlink') describeLink(abs, entry, prefix);
      else if (entry.kind === 'directory') {
        if (depth + 1 > limits.maxDepth) {
          inventory.stoppedAt = 'too_deep';
          return false;
        }
        if (!walk(abs, depth + 1)) return false;
      }
    }
    return true;
  };
  walk(root, 0);
  return inventory;
}

function kindOf(st: Stats): PluginFileKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  return 'special';
}

function describeLink(abs: string, entry: PluginFile, rootPrefix: string): void {
  try {
    entry.linkTarget = realpathSync.native(abs);
  } catch {
    entry.dangling = true;
    try {
      entry.linkTarget = resolve(dirname(abs), readlinkSync(abs));
    } catch {
      entry.linkTarget = abs;
    }
  }
  entry.linkInside = isInside(entry.linkTarget, rootPrefix);
}

/** Whether `path` is `root` itself or below it; `rootPrefix` ends with the separator. */
export function isInside(path: string, rootPrefix: string): boolean {
  return path.startsWith(rootPrefix) || path === rootPrefix.slice(0, -1);
}
