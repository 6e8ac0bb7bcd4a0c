import { type Dirent, lstatSync, readdirSync, realpathSync, type Stats, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import type { Diagnostic } from '../diagnostics.js';
import { hasErrors } from '../diagnostics.js';
import { MANIFEST_FILE, readManifest } from '../manifest/parse-manifest.js';
import type { PluginCandidate } from './candidate.js';
import { resolveEntryPoint } from './entry-point.js';
import { DEFAULT_FILE_LIMITS, type FileLimits, inventoryPlugin } from './plugin-inventory.js';

/** The seed's search paths after the configured ones: the user's, then the system's. */
export function defaultSearchPaths(home: string = homedir()): string[] {
  const paths = [join(home, '.reed', 'plugins')];
  if (process.platform !== 'win32') paths.push('/usr/local/share/reed/plugins');
  return paths;
}

export interface DiscoveryOptions {
  /** Directories to search, highest precedence first. Relative paths resolve against the working directory. */
  searchPaths: readonly string[];
  /** Caps per plugin directory; see {@link FileLimits} for defaults. */
  fileLimits?: Partial<FileLimits>;
}

export type SearchPathStatus =
  | 'searched'
  | 'missing'
  | 'not_directory'
  | 'unreadable'
  | 'insecure'
  | 'duplicate';

export interface SearchPathReport {
  path: string;
  status: SearchPathStatus;
  plugins: number;
}

export interface DiscoveryResult {
  /** Every plugin found, valid or not, sorted by (priority, name, id); broken manifests without an id last. */
  candidates: PluginCandidate[];
  searchPaths: SearchPathReport[];
  /** Findings about the search itself rather than one plugin. */
  diagnostics: Diagnostic[];
}

/**
 * Finds `plugin.toml` and `* /plugin.toml` under each search path and analyses each plugin found: manifest,
 * plugin type, entry point, and an inventory of its files for the security checks. One broken plugin never
 * stops the others; it comes back as an `invalid` candidate with its diagnostics.
 *
 * Precedence for an id found more than once: the copy in the earliest search path wins (like `PATH`), even
 * when that copy is invalid, so that a broken override is reported rather than silently replaced by another
 * version. Later copies are `shadowed`, and the winner carries a `duplicate_id` warning naming them. Two copies
 * in the same search path are ambiguous: both are `invalid` with a `duplicate_id` error.
 *
 * Synchronous by design: thousands of tiny reads are several times faster with sync calls than through the
 * thread pool (bench/discovery), and discovery happens once, before the host serves anything.
 */
export function discoverPlugins(options: DiscoveryOptions): DiscoveryResult {
  const limits: FileLimits = { ...DEFAULT_FILE_LIMITS, ...options.fileLimits };
  const reports: SearchPathReport[] = [];
  const diagnostics: Diagnostic[] = [];
  const candidates: PluginCandidate[] = [];
  const seenSearchPaths = new Set<string>();
  const seenPluginDirs = new Set<string>();

  options.searchPaths.forEach((given) => {
    const path = resolve(given);
    const report: SearchPathReport = { path, status: 'searched', plugins: 0 };
    reports.push(report);
    let st: Stats;
    let real: string;
    try {
      st = statSync(path);
      real = realpathSync.native(path);
    } catch {
      report.status = 'missing';
      return;
    }
    if (!st.isDirectory()) {
      report.status = 'not_directory';
      diagnostics.push({
        code: 'search_path_unreadable',
        severity: 'warning',
        message: `search path ${path} is not a directory`,
        file: path,
      });
      return;
    }
    if (seenSearchPaths.has(real)) {
      report.status = 'duplicate';
      return;
    }
    seenSearchPaths.add(real);
    if ((st.mode & 0o002) !== 0) {
      report.status = 'insecure';
      diagnostics.push({
        code: 'search_path_insecure',
        severity: 'error',
        message: `search path ${path} is world-writable, so anyone could add a plugin to it; skipped (chmod o-w ${path})`,
        file: path,
      });
      return;
    }
    let entries: Dirent[];
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch (error) {
      report.status = 'unreadable';
      diagnostics.push({
        code: 'search_path_unreadable',
        severity: 'warning',
        message: `cannot list search path ${path}: ${(error as Error).message}`,
        file: path,
      });
      return;
    }
    const index = reports.length - 1;
    // [directory as found, its real path when known without asking the kernel]
    const pluginDirs: [string, string | undefined][] = [];
    if (entries.some((e) => e.name === MANIFEST_FILE)) pluginDirs.push([path, real]);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      // `*` in the seed's glob pattern does not match dot-entries.
      if (entry.name.startsWith('.') || !(entry.isDirectory() || entry.isSymbolicLink())) continue;
      const dir = join(path, entry.name);
      if (hasManifest(dir)) pluginDirs.push([dir, entry.isDirectory() ? join(real, entry.name) : undefined]);
    }
    for (const [dir, realDir] of pluginDirs) {
      const candidate = analyzeCandidate(dir, path, index, limits, realDir);
      const root = candidate.inventory?.root ?? dir;
      if (seenPluginDirs.has(root)) continue; // the same directory reached twice through links
      seenPluginDirs.add(root);
      candidates.push(candidate);
      report.plugins++;
    }
  });

  applyPrecedence(candidates);
  candidates.sort(compareCandidates);
  return { candidates, searchPaths: reports, diagnostics };
}

function hasManifest(dir: string): boolean {
  try {
    return lstatSync(join(dir, MANIFEST_FILE), { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false; // ENOTDIR, EACCES: not a plugin directory we can use
  }
}

/** Reads and analyses one plugin directory. Never throws for anything the plugin's files contain. */
export function analyzeCandidate(
  pluginDir: string,
  searchPath: string,
  searchPathIndex: number,
  limits: FileLimits,
  /** The directory's real path, when the caller already knows it. */
  realDir?: string,
): PluginCandidate {
  const manifestPath = join(pluginDir, MANIFEST_FILE);
  const candidate: PluginCandidate = {
    manifestPath,
    pluginDir,
    searchPath,
    searchPathIndex,
    diagnostics: [],
    status: 'invalid',
  };
  let root: string;
  try {
    root = realDir ?? realpathSync.native(pluginDir);
    candidate.inventory = inventoryPlugin(root, limits);
  } catch (error) {
    candidate.diagnostics.push({
      code: 'manifest_unreadable',
      severity: 'error',
      message: `cannot read plugin directory ${pluginDir}: ${(error as Error).message}`,
      file: manifestPath,
    });
    return candidate;
  }
  for (const u of candidate.inventory.unlisted.slice(0, 10)) {
    candidate.diagnostics.push({
      code: 'file_name_invalid',
      severity: 'error',
      message: `the plugin directory holds "${u.path}", which ${u.reason}: the host cannot account for it (in checks and signatures), so the plugin is not loaded; rename or remove it`,
      file: join(pluginDir, u.path),
    });
  }
  const manifestEntry = candidate.inventory.files.find((f) => f.path === MANIFEST_FILE);
  if (manifestEntry?.kind === 'symlink' && manifestEntry.linkInside !== true) {
    // Do not even read a manifest that lives outside the plugin directory.
    candidate.diagnostics.push({
      code: 'symlink_escape',
      severity: 'error',
      message: `${MANIFEST_FILE} is a symlink to ${manifestEntry.linkTarget ?? '?'}, outside the plugin directory`,
      file: manifestPath,
    });
    return candidate;
  }
  // The real file, opened without following links: a link inside the plugin is resolved by the walk above.
  const manifestFile =
    manifestEntry?.kind === 'symlink' && manifestEntry.linkTarget !== undefined
      ? manifestEntry.linkTarget
      : join(root, MANIFEST_FILE);
  const parsed = readManifest(manifestFile, limits.maxManifestBytes);
  for (const d of parsed.diagnostics) candidate.diagnostics.push({ ...d, file: manifestPath });
  if (parsed.id !== undefined) candidate.id = parsed.id;
  if (parsed.sha256 !== undefined) {
    candidate.manifestSource = {
      path: relative(root, manifestFile).split(sep).join('/'),
      sha256: parsed.sha256,
    };
  }
  if (parsed.manifest !== undefined) {
    candidate.manifest = parsed.manifest;
    const entry = resolveEntryPoint(parsed.manifest, candidate.inventory, manifestPath);
    candidate.diagnostics.push(...entry.diagnostics);
    if (entry.pluginType !== undefined) candidate.pluginType = entry.pluginType;
    if (entry.entryPoint !== undefined) candidate.entryPoint = entry.entryPoint;
  }
  candidate.status =
    hasErrors(candidate.diagnostics) || candidate.manifest === undefined ? 'invalid' : 'valid';
  return candidate;
}

function applyPrecedence(candidates: PluginCandidate[]): void {
  const byId = new Map<string, PluginCandidate[]>();
  for (const c of candidates) {
    if (c.id === undefined) continue;
    const group = byId.get(c.id);
    if (group === undefined) byId.set(c.id, [c]);
    else group.push(c);
  }
  for (const [id, group] of byId) {
    if (group.length < 2) continue;
    // Candidates were pushed in search-path order, so the group is already in precedence order.
    const firstIndex = group[0]?.searchPathIndex;
    const top = group.filter((c) => c.searchPathIndex === firstIndex);
    const rest = group.filter((c) => c.searchPathIndex !== firstIndex);
    const topPaths = top.map((c) => c.manifestPath).join(', ');
    if (top.length > 1) {
      for (const c of top) {
        c.status = 'invalid';
        c.diagnostics.push({
          code: 'duplicate_id',
          severity: 'error',
          message: `plugin id "${id}" is used by ${top.length} plugins in the same search path (${topPaths}); none is loaded until the ids are unique`,
          file: c.manifestPath,
          field: 'metadata.id',
          pluginId: id,
        });
      }
    } else if (top[0] !== undefined) {
      top[0].diagnostics.push({
        code: 'duplicate_id',
        severity: 'warning',
        message: `plugin "${id}" shadows other copies in later search paths: ${rest.map((c) => c.manifestPath).join(', ')}`,
        file: top[0].manifestPath,
        field: 'metadata.id',
        pluginId: id,
      });
    }
    for (const c of rest) {
      c.status = 'shadowed';
      c.diagnostics.push({
        code: 'duplicate_id',
        severity: 'warning',
        message: `plugin "${id}" is shadowed by ${topPaths}, which comes earlier in the search paths`,
        file: c.manifestPath,
        field: 'metadata.id',
        pluginId: id,
      });
    }
  }
}

function compareCandidates(a: PluginCandidate, b: PluginCandidate): number {
  const am = a.manifest?.metadata;
  const bm = b.manifest?.metadata;
  if (am === undefined || bm === undefined) {
    if (am !== bm) return am === undefined ? 1 : -1;
    return compareStrings(a.manifestPath, b.manifestPath);
  }
  return (
    am.priority - bm.priority ||
    compareStrings(am.name, bm.name) ||
    compareStrings(am.id, bm.id) ||
    a.searchPathIndex - b.searchPathIndex ||
    compareStrings(a.manifestPath, b.manifestPath)
  );
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
