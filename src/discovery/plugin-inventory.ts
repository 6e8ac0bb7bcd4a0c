import { lstatSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

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
  /**
   * Entries the walk saw but cannot list by a name the host can use (not UTF-8, control characters, a path too
   * long to open, an unreadable directory): they would otherwise fall outside the signature and the checks, so
   * each one makes the plugin invalid (`file_name_invalid`). `path` is printable (escaped).
   */
  unlisted: { path: string; reason: string }[];
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Why a relative path cannot stand for a file of a plugin, or undefined when it can. Control characters (C0,
 * DEL, C1) are refused because the signed listing is line-based and a name with a newline could stand for two
 * lines; empty, `.` and `..` segments and absolute paths because they are not names of files inside the plugin.
 */
export function fileNameProblem(path: string): string | undefined {
  if (CONTROL_RE.test(path)) return 'has a control character (newline, tab, NUL, ...)';
  if (path.startsWith('/') || path.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) {
    return 'is not a relative path of plain names';
  }
  return undefined;
}

/**
 * {@link fileNameProblem} for `path`, whose last segment is `name` as a directory listing gave it and whose other
 * segments were judged already: the same verdict without splitting the whole path again. A name that is not one
 * plain segment (which a listing never gives) goes the long way.
 */
function nameProblem(name: string, path: string): string | undefined {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) return fileNameProblem(path);
  if (CONTROL_RE.test(name)) return 'has a control character (newline, tab, NUL, ...)';
  return undefined;
}

/** A name as JSON-escaped text, for messages (the raw name may hold escapes meant for a terminal). */
function printableName(name: string): string {
  return JSON.stringify(name).slice(1, -1);
}

/**
 * Walks `root` (already a real path) without following symlinks. Only the caps in `limits` that bound the walk
 * itself (file count, depth) stop it; sizes and modes are recorded for the SecurityRule to judge.
 */
export function inventoryPlugin(
  root: string,
  limits: FileLimits,
  /** The root's own listing ({@link listDirectory}), when the caller has just read it (discovery does). */
  rootListing?: DirListing,
  /**
   * For an entry of the root: its stats taken another way, or undefined for lstat's. Discovery opens plugin.toml
   * without following a link and reads it at once, and gives that open file's fstat (src/discovery/discover.ts).
   */
  statRootEntry?: (name: string, abs: string) => Stats | undefined,
): PluginInventory {
  const rootStat = lstatSync(root);
  const inventory: PluginInventory = {
    root,
    rootMode: rootStat.mode,
    files: [],
    totalBytes: 0,
    unlisted: [],
  };
  const prefix = root.endsWith(sep) ? root : root + sep;
  const unlisted = (path: string, reason: string) => inventory.unlisted.push({ path, reason });
  // `rel` is `dir` relative to the root with `/` separators ('' for the root): built as the walk goes down.
  const walk = (dir: string, rel: string, depth: number, listing?: DirListing): boolean => {
    const names = listNames(dir, rel, unlisted, listing);
    if (names === undefined) return true;
    for (const name of names) {
      if (inventory.files.length >= limits.maxFiles) {
        inventory.stoppedAt = 'too_many_files';
        return false;
      }
      // A listed name is one segment (never empty, `.`, `..` or holding `/`), and `rel` was judged on the way
      // down: only the name's own characters are left to judge, and it joins without path.join's normalising.
      const abs = dir.endsWith(sep) ? dir + name : dir + sep + name;
      const path = rel === '' ? name : `${rel}/${name}`;
      const problem = nameProblem(name, path);
      if (problem !== undefined) {
        unlisted(printableName(path), problem);
        continue;
      }
      let st: Stats | undefined = rel === '' ? statRootEntry?.(name, abs) : undefined;
      if (st === undefined) {
        try {
          st = lstatSync(abs);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT') unlisted(printableName(path), code ?? 'cannot be examined');
          continue; // ENOENT: vanished while we walked
        }
      }
      const entry: PluginFile = { path, kind: kindOf(st), size: st.size, mode: st.mode };
      inventory.files.push(entry);
      if (entry.kind === 'file') inventory.totalBytes += st.size;
      else if (entry.kind === 'symlink') describeLink(abs, entry, prefix);
      else if (entry.kind === 'directory') {
        if (depth + 1 > limits.maxDepth) {
          inventory.stoppedAt = 'too_deep';
          return false;
        }
        if (!walk(abs, path, depth + 1)) return false;
      }
    }
    return true;
  };
  walk(root, '', 0, rootListing);
  return inventory;
}

/**
 * A directory's names as {@link listDirectory} read them: strings when every name decoded cleanly, else the raw
 * bytes of each.
 */
export type DirListing = string[] | Buffer[];

/**
 * Lists `dir`: its names as strings when none of them decodes to U+FFFD, else (a name that is not UTF-8, or that
 * holds U+FFFD itself) the directory listed again as bytes, so that {@link listNames} can judge each name by its
 * bytes. Strings first because a listing of Buffers costs a Buffer per name (~2 us more for a plugin directory of
 * two files, and discovery lists every plugin directory); the bytes only when a name needs them. Throws as
 * readdirSync does.
 */
export function listDirectory(dir: string): DirListing {
  const names = readdirSync(dir);
  for (const name of names) if (name.includes('\uFFFD')) return readdirSync(dir, { encoding: 'buffer' });
  return names;
}

/**
 * The names in `dir` (`rel` from the root), sorted; a name that is not UTF-8 is recorded as unlisted instead, and
 * a directory that cannot be listed is recorded and gives undefined. `listing`: the names, already read.
 */
function listNames(
  dir: string,
  rel: string,
  unlisted: (path: string, reason: string) => void,
  listing?: DirListing,
): string[] | undefined {
  let raw: DirListing;
  try {
    // Node turns every name that is not UTF-8 into U+FFFD, a name no call can open: such a listing comes as bytes.
    raw = listing ?? listDirectory(dir);
  } catch (error) {
    // Not even root could list it (a path past PATH_MAX, EACCES on a network file system): its files cannot be
    // accounted for, so the plugin cannot be vouched for either.
    unlisted(printableName(rel || '.'), (error as NodeJS.ErrnoException).code ?? 'unreadable');
    return undefined;
  }
  const names: string[] = [];
  for (const entry of raw) {
    // A string came from a listing whose every name decoded without U+FFFD: nothing to judge.
    if (typeof entry === 'string') {
      names.push(entry);
      continue;
    }
    // The lenient decode is the fast path; only a name it had to repair (or that holds U+FFFD itself) gets the
    // strict decoder's verdict.
    const name = entry.toString('utf8');
    if (!name.includes('\uFFFD')) {
      names.push(name);
      continue;
    }
    try {
      names.push(strictUtf8.decode(entry));
    } catch {
      const latin1 = entry.toString('latin1');
      unlisted(printableName(rel === '' ? latin1 : `${rel}/${latin1}`), 'is not UTF-8');
    }
  }
  names.sort();
  return names;
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
