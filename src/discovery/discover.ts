import { type Dirent, lstatSync, readdirSync, realpathSync, type Stats, statSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import type { Diagnostic } from '../diagnostics.js';
import { hasErrors } from '../diagnostics.js';
import {
  MANIFEST_FILE,
  manifestValidatorSource,
  parseManifestBytes,
  readManifest,
  readManifestOnce,
} from '../manifest/parse-manifest.js';
import type { PluginCandidate } from './candidate.js';
import { resolveEntryPoint } from './entry-point.js';
import { runInParallel, runOffThread } from './parallel.js';
import {
  DEFAULT_FILE_LIMITS,
  type DirListing,
  type FileLimits,
  inventoryPlugin,
  listDirectory,
  type PluginInventory,
} from './plugin-inventory.js';
import { applyPrecedence, compareCandidates } from './precedence.js';

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
  /**
   * Worker threads that analyse plugin directories beside the calling thread when there are many: default one per
   * core beyond the first, at most 3; 0 keeps all the work on the calling thread. The result is the same.
   */
  workers?: number;
  /** From how many plugin directories (and other entries of the search paths) workers are used: default 2,500. */
  parallelFrom?: number;
  /** False: with workers, the calling thread leaves them every plugin directory (tests prove the results equal). */
  callerWorks?: boolean;
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
 * thread pool (bench/discovery), and discovery happens once, before the host serves anything. A large tree is
 * shared with worker threads that run the same synchronous code (src/discovery/parallel.ts): the caller still
 * gets one synchronous answer, the same as without them. A serving host's scan of one uploaded plugin must not hold
 * its event loop that long: {@link discoverPluginsOffThread} awaits the same code on a worker.
 */
export function discoverPlugins(options: DiscoveryOptions): DiscoveryResult {
  const search = openSearchPaths(options);
  // Each job is analysed on this thread and, for a large tree, on worker threads too (same results, in the same
  // order: src/discovery/parallel.ts).
  const workers =
    search.jobs.length >= (options.parallelFrom ?? PARALLEL_FROM) ? (options.workers ?? defaultWorkers()) : 0;
  const results = runInParallel({
    ...analysis(search, workers),
    ...(options.callerWorks === undefined ? {} : { callerWorks: options.callerWorks }),
  });
  return gatherCandidates(search, results);
}

/**
 * {@link discoverPlugins}, with the plugin directories analysed on a worker thread (`workers`, default 1; their
 * walk is the work: a lstat per file) while the caller's event loop turns: a serving host's scan of an uploaded
 * plugin (src/host/install.ts). Only the search paths are opened and listed on the calling thread. The result is
 * discoverPlugins' (src/discovery/parallel.ts, runOffThread): what a worker cannot carry (a candidate
 * {@link portableCandidate} refuses) or do is done on the calling thread, and so is everything when no worker
 * starts (0 asked, or the sources run without a build, as under the test runner). `parallelFrom` and
 * `callerWorks` are not read.
 */
export async function discoverPluginsOffThread(options: DiscoveryOptions): Promise<DiscoveryResult> {
  const search = openSearchPaths(options);
  const results = await runOffThread(analysis(search, options.workers ?? 1));
  return gatherCandidates(search, results);
}

/** The analysis of the search's jobs, both ways: on `workers` worker threads, which are sent the manifest validator. */
function analysis(search: ReturnType<typeof openSearchPaths>, workers: number) {
  if (workers > 0) search.context.manifestValidator = manifestValidatorSource();
  return {
    jobs: search.jobs,
    context: search.context,
    run: analyzeJob,
    revive: reviveCandidate,
    workerUrl: WORKER_URL,
    workers,
  };
}

/** The search paths opened and listed: their reports, findings, and the jobs (places a plugin may be) they hold. */
interface OpenedSearch {
  reports: SearchPathReport[];
  diagnostics: Diagnostic[];
  jobs: DirJob[];
  context: DiscoveryContext;
}

/** Discovery's first step: every search path is opened and listed; the plugin directories they may hold are the jobs. */
function openSearchPaths(options: DiscoveryOptions): OpenedSearch {
  const limits: FileLimits = { ...DEFAULT_FILE_LIMITS, ...options.fileLimits };
  const reports: SearchPathReport[] = [];
  const diagnostics: Diagnostic[] = [];
  const seenSearchPaths = new Set<string>();
  const paths: OpenedSearchPath[] = [];
  const jobs: DirJob[] = [];
  options.searchPaths.forEach((given) => {
    const path = resolve(given);
    const report: SearchPathReport = { path, status: 'searched', plugins: 0 };
    reports.push(report);
    const opened = openSearchPath(path, report, diagnostics, seenSearchPaths);
    if (opened === undefined) return;
    const p = paths.length;
    paths.push({ path, real: opened.real, index: reports.length - 1 });
    jobs.push(...jobsIn(p, opened.entries));
  });
  return { reports, diagnostics, jobs, context: { paths, limits } };
}

/** Discovery's last step: each job's candidate taken in the jobs' order, as one loop would have, then precedence. */
function gatherCandidates(search: OpenedSearch, results: (PluginCandidate | undefined)[]): DiscoveryResult {
  const { reports, diagnostics, jobs, context } = search;
  const candidates: PluginCandidate[] = [];
  const seenPluginDirs = new Set<string>();
  results.forEach((candidate, i) => {
    if (candidate === undefined) return;
    const root = candidate.inventory?.root ?? candidate.pluginDir;
    if (seenPluginDirs.has(root)) return; // the same directory reached twice through links
    seenPluginDirs.add(root);
    candidates.push(candidate);
    const report = reports[context.paths[(jobs[i] as DirJob).p]?.index ?? -1];
    if (report !== undefined) report.plugins++;
  });
  applyPrecedence(candidates);
  candidates.sort(compareCandidates);
  return { candidates, searchPaths: reports, diagnostics };
}

/** Below this many plugin directories (and their likes) discovery runs on the calling thread only. */
export const PARALLEL_FROM = 2_500;
const WORKER_URL = new URL('./discover-worker.js', import.meta.url);

/** One worker per core beyond the calling thread's, at most 3 (the file system is shared; more do not pay). */
function defaultWorkers(): number {
  return Math.max(0, Math.min(availableParallelism() - 1, 3));
}

/** A search path that could be listed, and its place among all the search paths (its precedence). */
interface OpenedSearchPath {
  path: string;
  real: string;
  index: number;
}

/** What every job shares: the opened search paths and the caps. Plain data (it is copied to the workers). */
export interface DiscoveryContext {
  paths: OpenedSearchPath[];
  limits: FileLimits;
  /** For the workers: the manifest's validator as code (src/schema-check.ts), so that they do not compile it. */
  manifestValidator?: string;
}

/**
 * One place a plugin may be: the search path itself (`name` undefined) when it holds plugin.toml, or one entry of
 * it (a directory, or a link that may lead to one). `p` indexes {@link DiscoveryContext.paths}.
 */
export interface DirJob {
  p: number;
  name?: string;
  isDirectory: boolean;
}

/**
 * The jobs of one search path: itself when it holds a manifest, then each subdirectory (or link), by name; `*` in
 * the seed's glob pattern does not match dot-entries.
 */
function jobsIn(p: number, entries: Dirent[]): DirJob[] {
  const jobs: DirJob[] = [];
  if (entries.some((e) => e.name === MANIFEST_FILE)) jobs.push({ p, isDirectory: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.') || !(entry.isDirectory() || entry.isSymbolicLink())) continue;
    jobs.push({ p, name: entry.name, isDirectory: entry.isDirectory() });
  }
  return jobs;
}

/**
 * One job: whether the place holds a plugin and, when it does, its analysis. A plain subdirectory is listed once:
 * the listing both says whether it holds plugin.toml and is the first step of its inventory (one readdir instead
 * of an lstat and then a readdir). Never throws for anything a plugin's files contain.
 */
export function analyzeJob(job: DirJob, context: DiscoveryContext): PluginCandidate | undefined {
  const at = context.paths[job.p];
  if (at === undefined) return undefined;
  const { path, real, index } = at;
  if (job.name === undefined) {
    return analyzeAt(path, child(path, MANIFEST_FILE), path, index, context.limits, real);
  }
  const dir = child(path, job.name);
  if (job.isDirectory) {
    const listing = listPluginDir(dir);
    if (listing !== undefined) {
      return hasManifestName(listing)
        ? analyzeAt(
            dir,
            child(dir, MANIFEST_FILE),
            path,
            index,
            context.limits,
            child(real, job.name),
            listing,
          )
        : undefined;
    }
  }
  if (!hasManifest(dir)) return undefined;
  return analyzeAt(
    dir,
    child(dir, MANIFEST_FILE),
    path,
    index,
    context.limits,
    job.isDirectory ? child(real, job.name) : undefined,
  );
}

/**
 * Whether a candidate comes through JSON, the form a worker thread sends it in (src/discovery/parallel.ts), as it
 * left, once {@link reviveCandidate} has given its configuration back the null prototypes TOML tables have. JSON
 * keeps strings, booleans, finite numbers other than -0, arrays and plain objects, in their order; a candidate
 * holding anything else does not come through: a number JSON changes (inf, nan, -0 are TOML values), a value it
 * drops (undefined), a date in the configuration (a TomlDate), an empty configuration table (indistinguishable, once
 * copied, from no table), or an object on another prototype. Such a plugin is analysed again on the calling thread.
 * The inventory is not walked: plugin-inventory.ts makes it of strings, booleans and file sizes and modes only.
 */
export function portableCandidate(candidate: PluginCandidate | undefined): boolean {
  if (candidate === undefined) return true;
  const stack: object[] = [];
  const { inventory, manifest, ...rest } = candidate;
  if (!survivesJson(rest, stack, Object.prototype)) return false;
  if (manifest === undefined) return true;
  const { configuration, ...settings } = manifest;
  if (!survivesJson(settings, stack, Object.prototype)) return false;
  if (Object.getPrototypeOf(configuration) !== null) return Object.keys(configuration).length === 0;
  if (Object.keys(configuration).length === 0) return false;
  return survivesJson(configuration, stack, null);
}

/**
 * Whether `root` and everything within it survives JSON (above), its tables (non-array objects) being on
 * `tablePrototype`. `stack`: an empty array to work with (only objects go on it).
 */
function survivesJson(root: object, stack: object[], tablePrototype: object | null): boolean {
  stack.push(root);
  while (stack.length > 0) {
    const value = stack.pop() as Record<string, unknown>;
    if (Array.isArray(value)) {
      if (Object.getPrototypeOf(value) !== Array.prototype) return false;
      for (let i = 0; i < value.length; i++) if (!jsonLeaf(value[i], stack)) return false;
    } else {
      if (Object.getPrototypeOf(value) !== tablePrototype) return false;
      for (const key in value) if (!jsonLeaf(value[key], stack)) return false;
    }
  }
  return true;
}

/** A value JSON keeps as it is, or an object (pushed on `stack` to be looked into). */
function jsonLeaf(value: unknown, stack: object[]): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object':
      if (value !== null) stack.push(value);
      return true;
    default:
      return false; // undefined, a bigint, a function, a symbol
  }
}

/**
 * A candidate as JSON brought it from a worker, as the calling thread would have made it (see
 * {@link portableCandidate}): `undefined` (no plugin there) arrives as null.
 */
function reviveCandidate(candidate: PluginCandidate | undefined | null): PluginCandidate | undefined {
  if (candidate === null || candidate === undefined) return undefined;
  const manifest = candidate.manifest;
  if (manifest !== undefined && Object.keys(manifest.configuration).length > 0) {
    manifest.configuration = withNullPrototypes(manifest.configuration) as Record<string, unknown>;
  }
  return candidate;
}

/** `value` with every table (non-array object) rebuilt on a null prototype, as the TOML parser makes them. */
function withNullPrototypes(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(withNullPrototypes);
  const table: Record<string, unknown> = Object.create(null);
  for (const [key, item] of Object.entries(value)) table[key] = withNullPrototypes(item);
  return table;
}

/**
 * A search path's real path and entries, or undefined (with `report.status` saying why) when it is missing, not a
 * directory, a second name for one already searched, world-writable, or cannot be listed.
 */
function openSearchPath(
  path: string,
  report: SearchPathReport,
  diagnostics: Diagnostic[],
  seenSearchPaths: Set<string>,
): { real: string; entries: Dirent[] } | undefined {
  let st: Stats;
  let real: string;
  try {
    st = statSync(path);
    real = realpathSync.native(path);
  } catch {
    report.status = 'missing';
    return undefined;
  }
  if (!st.isDirectory()) {
    report.status = 'not_directory';
    diagnostics.push({
      code: 'search_path_unreadable',
      severity: 'warning',
      message: `search path ${path} is not a directory`,
      file: path,
    });
    return undefined;
  }
  if (seenSearchPaths.has(real)) {
    report.status = 'duplicate';
    return undefined;
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
    return undefined;
  }
  try {
    return { real, entries: readdirSync(path, { withFileTypes: true }) };
  } catch (error) {
    report.status = 'unreadable';
    diagnostics.push({
      code: 'search_path_unreadable',
      severity: 'warning',
      message: `cannot list search path ${path}: ${(error as Error).message}`,
      file: path,
    });
    return undefined;
  }
}

/**
 * `name` (one entry of a listing: never empty, `.`, `..` or holding a separator) under `dir` (an absolute, resolved
 * path): path.join's result without its normalising pass, which discovery would otherwise make for every plugin.
 */
function child(dir: string, name: string): string {
  return dir.endsWith(sep) ? dir + name : dir + sep + name;
}

const MANIFEST_NAME = Buffer.from(MANIFEST_FILE);

/** Whether a listing holds plugin.toml (a name as bytes only when some name of the listing was not clean UTF-8). */
function hasManifestName(listing: DirListing): boolean {
  for (const name of listing) {
    if (typeof name === 'string' ? name === MANIFEST_FILE : name.equals(MANIFEST_NAME)) return true;
  }
  return false;
}

/** A directory's names ({@link listDirectory}), or undefined when it cannot be listed (the caller then looks the other way). */
function listPluginDir(dir: string): DirListing | undefined {
  try {
    return listDirectory(dir);
  } catch {
    return undefined;
  }
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
  /** The directory's listing ({@link listDirectory}), when the caller has just read it. */
  listing?: DirListing,
): PluginCandidate {
  return analyzeAt(
    pluginDir,
    join(pluginDir, MANIFEST_FILE),
    searchPath,
    searchPathIndex,
    limits,
    realDir,
    listing,
  );
}

/**
 * {@link analyzeCandidate} with the manifest's path given: {@link analyzeJob}'s directories are resolved paths (a
 * search path, or a name listed in one), so `child` gives what path.join would, without its normalising pass.
 */
function analyzeAt(
  pluginDir: string,
  manifestPath: string,
  searchPath: string,
  searchPathIndex: number,
  limits: FileLimits,
  realDir?: string,
  listing?: DirListing,
): PluginCandidate {
  const candidate: PluginCandidate = {
    manifestPath,
    pluginDir,
    searchPath,
    searchPathIndex,
    diagnostics: [],
    status: 'invalid',
  };
  let root: string;
  // plugin.toml is opened once, by the walk: the fstat of the open file is its entry in the inventory (no lstat
  // beside it) and the bytes read from it are the manifest parsed below. Anything but a regular file within the cap
  // that reads whole is read again by readManifest, which reports it as before.
  let manifestBytes: Buffer | undefined;
  const statRootEntry = (name: string, abs: string) => {
    if (name !== MANIFEST_FILE) return undefined;
    const once = readManifestOnce(abs, limits.maxManifestBytes);
    manifestBytes = once?.bytes;
    return once?.stats;
  };
  try {
    root = realDir ?? realpathSync.native(pluginDir);
    candidate.inventory = inventoryPlugin(root, limits, listing, statRootEntry);
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
  readCandidateManifest(candidate, candidate.inventory, root, limits.maxManifestBytes, manifestBytes);
  candidate.status =
    hasErrors(candidate.diagnostics) || candidate.manifest === undefined ? 'invalid' : 'valid';
  return candidate;
}

/**
 * The manifest step of {@link analyzeCandidate}: refuses a manifest linked from outside the plugin directory
 * unread, else parses it and resolves the entry point, recording what it finds on `candidate`.
 */
function readCandidateManifest(
  candidate: PluginCandidate,
  inventory: PluginInventory,
  root: string,
  maxManifestBytes: number,
  /** plugin.toml's bytes, when the walk read them from the file it listed as a regular file. */
  manifestBytes?: Buffer,
): void {
  const { manifestPath } = candidate;
  const manifestEntry = inventory.files.find((f) => f.path === MANIFEST_FILE);
  if (manifestEntry?.kind === 'symlink' && manifestEntry.linkInside !== true) {
    // Do not even read a manifest that lives outside the plugin directory.
    candidate.diagnostics.push({
      code: 'symlink_escape',
      severity: 'error',
      message: `${MANIFEST_FILE} is a symlink to ${manifestEntry.linkTarget ?? '?'}, outside the plugin directory`,
      file: manifestPath,
    });
    return;
  }
  // The real file, opened without following links: a link inside the plugin is resolved by the inventory's walk.
  const rootManifest = join(root, MANIFEST_FILE);
  const manifestFile =
    manifestEntry?.kind === 'symlink' && manifestEntry.linkTarget !== undefined
      ? manifestEntry.linkTarget
      : rootManifest;
  const parsed =
    manifestBytes !== undefined && manifestEntry?.kind === 'file'
      ? parseManifestBytes(manifestBytes, manifestFile)
      : readManifest(manifestFile, maxManifestBytes);
  for (const d of parsed.diagnostics) candidate.diagnostics.push({ ...d, file: manifestPath });
  if (parsed.id !== undefined) candidate.id = parsed.id;
  if (parsed.sha256 !== undefined) {
    candidate.manifestSource = {
      path: manifestFile === rootManifest ? MANIFEST_FILE : relative(root, manifestFile).split(sep).join('/'),
      sha256: parsed.sha256,
    };
  }
  if (parsed.manifest !== undefined) {
    candidate.manifest = parsed.manifest;
    const entry = resolveEntryPoint(parsed.manifest, inventory, manifestPath);
    candidate.diagnostics.push(...entry.diagnostics);
    if (entry.pluginType !== undefined) candidate.pluginType = entry.pluginType;
    if (entry.entryPoint !== undefined) candidate.entryPoint = entry.entryPoint;
  }
}
