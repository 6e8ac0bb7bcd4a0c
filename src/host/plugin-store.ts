import { randomBytes } from 'node:crypto';
import { constants, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Logger } from 'pino';
import { removeTree } from '../backends/shared/safe-remove.js';
import type { HostSession } from '../backends/shared/session.js';
import { ReedError } from '../errors.js';
import { fsyncDir, readJsonRecord, removeRecordTemps, writeJsonRecord } from '../json-record.js';
import { PLUGIN_ID_PATTERN } from '../manifest/schema.js';
import { isAlive } from '../process-identity.js';

/** One installed plugin: its directory under the store (relative), and its version when installed. */
export interface InstalledPlugin {
  dir: string;
  version: string;
}

const INDEX = 'installed.json';
const MAX_INDEX_BYTES = 16 * 1024 * 1024;
const ID_RE = new RegExp(PLUGIN_ID_PATTERN);
/** `<version>_<pid>_<start>_<random>`: whose it was, so that only a dead host's unreferenced leftovers are removed. */
const VERSION_DIR = /^([0-9A-Za-z.+-]{1,128})_([0-9]{1,10})_([0-9]{0,20})_([0-9a-f]{16})$/;
/** A version as VERSION_DIR's first part takes it. */
const VERSION_NAME = /^[0-9A-Za-z.+-]{1,128}$/;

/**
 * Plugins installed through the API, kept under `<data_dir>/plugins/` so that they survive a restart:
 *
 *     staging/<pid>_<start>_<random>/     a fresh private directory per upload (0700), extracted into
 *     versions/<id>/<version>_<pid>_<start>_<random>/   one installed version's files, never changed once there
 *     installed.json                      which version directory each installed id loads: the pointer
 *
 * A version directory is complete (every file and directory fsynced) before it is renamed into `versions/`, and the
 * pointer is replaced by writing a new file, fsyncing it and renaming it over the old one (then the directory is
 * fsynced): a host killed at any moment comes back with the old pointer or the new one, each naming a whole
 * directory. At start, staging and version directories that nothing points to and whose host is dead are removed
 * (`sweep`). One `serve` per data_dir changes the store; other hosts on it only read it.
 */
export class PluginStore {
  readonly root: string;
  #index: Record<string, InstalledPlugin> = {};

  constructor(
    dataDir: string,
    private readonly session: HostSession,
    private readonly logger: Logger,
  ) {
    this.root = join(dataDir, 'plugins');
  }

  /** Reads the pointer (a missing store is an empty one). A pointer that cannot be read is an error: nothing guessed. */
  open(): void {
    for (const dir of [this.root, join(this.root, 'staging'), join(this.root, 'versions')])
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#index = readIndex(join(this.root, INDEX));
  }

  /** The installed plugins' directories (absolute), by id. */
  installed(): Map<string, InstalledPlugin & { path: string }> {
    return new Map(
      Object.entries(this.#index).map(([id, p]) => [id, { ...p, path: join(this.root, p.dir) }] as const),
    );
  }

  /** Whether `dir` is a version directory of this store (its files are the store's to remove). */
  owns(dir: string): boolean {
    const rel = relative(join(this.root, 'versions'), dir);
    return rel !== '' && !rel.startsWith('..') && rel.split(sep).length === 2;
  }

  /** A fresh, empty, private directory for one upload. */
  stage(): string {
    const dir = join(this.root, 'staging', `${this.#owner()}_${randomBytes(8).toString('hex')}`);
    mkdirSync(dir, { mode: 0o700 });
    return dir;
  }

  /**
   * Moves a complete plugin tree (inside a staging directory) to its version directory, durably: every file and
   * directory under it fsynced, the rename, the parent fsynced. Returns the new path.
   */
  async keep(tree: string, id: string, version: string): Promise<string> {
    if (!ID_RE.test(id))
      throw new ReedError('install_id_mismatch', `"${id}" is not a plugin id`, { pluginId: id });
    // What readIndex accepts back (VERSION_DIR): manifests are checked for it (parse-manifest.ts), this keeps a
    // store no host could read from ever being written.
    if (!VERSION_NAME.test(version))
      throw new ReedError(
        'invalid_semver',
        `plugin "${id}": version "${version}" cannot name a version directory`,
        {
          pluginId: id,
          field: 'metadata.version',
        },
      );
    await fsyncTree(tree);
    const parent = join(this.root, 'versions', id);
    mkdirSync(parent, { recursive: true, mode: 0o755 });
    const dir = join(parent, `${version}_${this.#owner()}_${randomBytes(8).toString('hex')}`);
    renameSync(tree, dir);
    fsyncDir(parent);
    return dir;
  }

  /** Points `id` at `dir` (a version directory of this store), or forgets it (undefined); atomic and durable. */
  point(id: string, dir: string | undefined, version?: string): void {
    const next = this.#next(id, dir, version);
    writeIndex(this.root, next);
    this.#index = next;
  }

  /**
   * Throws store_full if pointing `id` at `dir` would take the pointer past its cap: checked before the version
   * starts, so that an install is refused while nothing of it serves yet (point checks again when it serves).
   */
  assertRoom(id: string, dir: string, version: string): void {
    indexBytes(this.root, this.#next(id, dir, version));
  }

  #next(id: string, dir: string | undefined, version?: string): Record<string, InstalledPlugin> {
    const next = { ...this.#index };
    if (dir === undefined) delete next[id];
    else next[id] = { dir: relative(this.root, dir), version: version ?? '' };
    return next;
  }

  /** Removes a version directory nothing points to (an old version, one that failed to start). */
  async discard(dir: string): Promise<void> {
    if (!this.owns(dir) || Object.values(this.#index).some((p) => join(this.root, p.dir) === dir)) return;
    await removeTree(dir, this.logger);
  }

  async removeStaging(dir: string): Promise<void> {
    await removeTree(dir, this.logger);
  }

  /**
   * Removes what dead hosts left: staging directories, version directories nothing points to, pointer files
   * never renamed into place.
   */
  async sweep(): Promise<void> {
    const referenced = new Set(Object.values(this.#index).map((p) => join(this.root, p.dir)));
    removeRecordTemps(this.root, INDEX);
    for (const name of list(join(this.root, 'staging'))) {
      const [pid, start] = name.split('_');
      if (!isAlive(Number(pid), start ?? '')) await removeTree(join(this.root, 'staging', name), this.logger);
    }
    for (const id of list(join(this.root, 'versions'))) {
      for (const name of list(join(this.root, 'versions', id))) {
        const path = join(this.root, 'versions', id, name);
        const m = VERSION_DIR.exec(name);
        if (referenced.has(path) || (m !== null && isAlive(Number(m[2]), m[3] ?? ''))) continue;
        await removeTree(path, this.logger);
      }
    }
  }

  #owner(): string {
    return `${this.session.pid}_${this.session.start}`;
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readIndex(path: string): Record<string, InstalledPlugin> {
  const parsed = readJsonRecord(path, MAX_INDEX_BYTES, (why) => unreadable(path, why)) as
    | { plugins?: unknown }
    | undefined;
  if (parsed === undefined) return {};
  const plugins = parsed?.plugins;
  if (plugins === null || typeof plugins !== 'object') throw unreadable(path, 'no "plugins" table');
  const out: Record<string, InstalledPlugin> = Object.create(null);
  for (const [id, p] of Object.entries(plugins as Record<string, unknown>)) {
    const { dir, version } = (p ?? {}) as Partial<InstalledPlugin>;
    const parts = typeof dir === 'string' ? dir.split('/') : [];
    // versions/<id>/<name>, and nothing else: the pointer never leads out of the store.
    if (!ID_RE.test(id) || parts.length !== 3 || parts[0] !== 'versions' || parts[1] !== id)
      throw unreadable(path, `the entry for "${id}" does not name a version directory of the store`);
    if (!VERSION_DIR.test(parts[2] as string)) throw unreadable(path, `the entry for "${id}" is malformed`);
    out[id] = { dir: dir as string, version: typeof version === 'string' ? version : '' };
  }
  return out;
}

function unreadable(path: string, why: string): ReedError {
  return new ReedError('store_unreadable', `the installed-plugin pointer ${path} cannot be read: ${why}`, {
    file: path,
  });
}

function writeIndex(root: string, index: Record<string, InstalledPlugin>): void {
  indexBytes(root, index);
  writeJsonRecord(root, INDEX, { version: 1, plugins: index }, 2);
}

/**
 * The pointer's size as written; store_full past the cap it is read back with (readIndex's): a tenant without
 * max_plugins installing for days would otherwise make a store no host could start on (the sixth review).
 */
function indexBytes(root: string, index: Record<string, InstalledPlugin>): number {
  const bytes = Buffer.byteLength(JSON.stringify({ version: 1, plugins: index }, null, 2));
  if (bytes > MAX_INDEX_BYTES)
    throw new ReedError(
      'store_full',
      `the pointer of installed plugins under ${root} would be ${bytes} bytes, over its cap of ${MAX_INDEX_BYTES}: remove plugins before installing more (or set the tenant's max_plugins)`,
      { file: join(root, INDEX) },
    );
  return bytes;
}

/**
 * fsyncs `dir` and every directory under it (their files were fsynced as they were written), on libuv's threads:
 * an archive may hold thousands of directories, and an fsync each on the host's thread held it for seconds.
 */
async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true }))
    if (entry.isDirectory()) await fsyncTree(join(dir, entry.name));
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
