import { closeSync, constants, fstatSync, mkdirSync, openSync, realpathSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, type Key, open, type RootDatabase } from 'lmdb';
import { closeOnExecUnder } from '../backends/process/fd-hygiene.js';
import { ReedError } from '../errors.js';
import { checkQuota, entrySize, type StorageService } from './services.js';
import { DEFAULT_STORAGE_PAGE_BYTES } from './storage-cost.js';

/**
 * The default, persistent StorageService: one LMDB environment (`<data_dir>/storage`), keys namespaced as
 * `<plugin id> NUL <key>`. LMDB installs from the npm registry as a prebuilt binary, reads are synchronous
 * memory-mapped lookups, and writes are synchronous transactions, so a plugin's call stays on its thread.
 * Quotas count each entry's on-disk cost at this environment's page size (entrySize), the same function
 * MemoryStorage uses.
 */
export class LmdbStorage implements StorageService {
  readonly #root: RootDatabase;
  readonly #db: Database<Uint8Array, Buffer>;
  readonly #usage = new Map<string, number>();
  readonly #pageBytes: number;
  /** Our own descriptor of data.mdb, to write the space reserve (see #reserve). */
  readonly #dataFd: number;
  /** Bytes of data.mdb known written (LMDB's pages, then our zeros): LMDB may write below this without new blocks. */
  #reservedEnd = 0;
  /** An upper bound of the end of LMDB's pages: the last measured end plus each write's most since. */
  #usedBound = 0;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#root = open({ path: dir, compression: false });
    // LMDB opens data.mdb and lock.mdb without O_CLOEXEC: any child the host spawned (a process-mode runner among
    // them) got every plugin's storage, writable. Process-mode spawns also mark every fd (fd-hygiene.ts); this
    // covers any other child. /proc names the files by their real path.
    closeOnExecUnder(realpathSync(dir));
    this.#db = this.#root.openDB<Uint8Array, Buffer>({
      name: 'plugin-storage-v2',
      encoding: 'binary',
      keyEncoding: 'binary',
    });
    // LMDB's page is the OS page (16 KiB on some arm64 machines): overflow values take whole pages of it.
    const { pageSize } = this.#root.getStats() as { pageSize?: unknown };
    this.#pageBytes = typeof pageSize === 'number' && pageSize > 0 ? pageSize : DEFAULT_STORAGE_PAGE_BYTES;
    // The host made this directory (0700) and LMDB just made the file in it; O_NOFOLLOW all the same.
    this.#dataFd = openSync(join(dir, 'data.mdb'), constants.O_WRONLY | constants.O_NOFOLLOW);
    this.#reservedEnd = fstatSync(this.#dataFd).size;
    this.#usedBound = this.#usedEnd();
    this.#migrate();
  }

  /** Where LMDB's committed pages end: nothing past it is in use, and a write transaction adds pages from it. */
  #usedEnd(): number {
    const { lastPageNumber } = this.#root.getStats() as { lastPageNumber?: unknown };
    // lmdb-js reports it (mdb_env_info); without it the reserve cannot be kept, so no write may start.
    if (typeof lastPageNumber !== 'number') throw new Error('lmdb: getStats() has no lastPageNumber');
    return (lastPageNumber + 1) * this.#pageBytes;
  }

  /**
   * Makes sure a write transaction of `bytes` of data finds its pages already written on disk, or refuses it with
   * `storage_write_failed` before LMDB starts. LMDB (lmdb-js 3.5.6, the newest) must never meet ENOSPC itself:
   * its page-write error path formats a message longer than the 100 bytes it allocates for it (mdb.c,
   * mdb_page_flush: "Attempting to write page at position ..."), corrupting the host's heap, and the host aborts
   * soon after in malloc or free (seen under test/integration/faults-disk-full). So the file carries a reserve of
   * zeros we wrote past LMDB's last page; LMDB's new pages overwrite it and need no new blocks. A transaction
   * adds at most its data plus a bounded number of tree and free-list pages (SLACK_PAGES). On a copy-on-write
   * file system (btrfs, ZFS) an overwrite needs new blocks anyway: there the reserve does not hold (docs/OPERATIONS.md, "The data directory's disk").
   */
  #reserve(pluginId: string, op: 'put' | 'delete', bytes: number): void {
    const most = bytes + LmdbStorage.SLACK_PAGES * this.#pageBytes;
    if (this.#usedBound + most > this.#reservedEnd) {
      this.#usedBound = this.#usedEnd();
      const want = this.#usedBound + most + LmdbStorage.RESERVE_BYTES;
      if (this.#usedBound + most > this.#reservedEnd) this.#extend(pluginId, op, want);
      else if (this.#reservedEnd < want) {
        try {
          this.#extend(pluginId, op, want);
        } catch {
          // The reserve ahead could not grow, but this write's pages are on disk already.
        }
      }
    }
    this.#usedBound += most;
  }

  /** What freeing `old`'s pages adds to the transaction: their numbers in the free list, 8 bytes each, and a page. */
  #freed(old: Uint8Array | undefined): number {
    return (old === undefined ? 0 : Math.ceil(old.byteLength / this.#pageBytes) * 8) + this.#pageBytes;
  }

  /** Writes zeros from the end of data.mdb to `end`; a full disk becomes `storage_write_failed`. */
  #extend(pluginId: string, op: 'put' | 'delete', end: number): void {
    let at = Math.max(this.#reservedEnd, fstatSync(this.#dataFd).size);
    try {
      while (at < end) {
        const n = Math.min(end - at, LmdbStorage.ZEROS.length);
        at += writeSync(this.#dataFd, LmdbStorage.ZEROS, 0, n, at);
      }
    } catch (error) {
      throw new ReedError(
        'storage_write_failed',
        `storage ${op} of plugin "${pluginId}" refused: no room on the data directory's disk for its pages (${String((error as Error)?.message ?? error).slice(0, 120)})`,
        { pluginId, cause: error },
      );
    } finally {
      this.#reservedEnd = Math.max(this.#reservedEnd, at);
    }
  }

  /** Pages a write transaction may add beyond its data: copied branch and leaf pages, free-list pages, the meta. */
  static readonly SLACK_PAGES = 64;
  /** Written ahead past what the next write needs, so most writes find their room without a system call. */
  static readonly RESERVE_BYTES = 256 * 1024;
  static readonly ZEROS = Buffer.alloc(256 * 1024);

  /**
   * Moves entries from the first layout ('plugin-storage', ordered-binary string keys). That encoding writes a
   * NUL inside a string one way in short strings and another in long ones, so range scans missed long keys: they
   * were left out of `list` and of the usage counted after a restart (a quota bypass).
   */
  #migrate(): void {
    const old = this.#root.openDB<Uint8Array, Key>({
      name: 'plugin-storage',
      encoding: 'binary',
      keyEncoding: 'ordered-binary',
    });
    const moved: Key[] = [];
    const { treeLeafPageCount = 0, overflowPages = 0 } = old.getStats() as Record<string, number>;
    if (treeLeafPageCount + overflowPages > 0)
      this.#reserve('', 'put', 2 * (treeLeafPageCount + overflowPages) * this.#pageBytes);
    this.#root.transactionSync(() => {
      for (const { key, value } of old.getRange({})) {
        const text = Array.isArray(key) ? key.join('\0') : String(key);
        const at = text.indexOf('\0');
        if (at > 0) this.#db.putSync(this.#key(text.slice(0, at), text.slice(at + 1)), Buffer.from(value));
        moved.push(key);
      }
      for (const key of moved) old.removeSync(key);
    });
  }

  /**
   * A write transaction; LMDB's failure (ENOSPC when the data directory's disk is full, EIO, a map full) becomes
   * `storage_write_failed`, the host's condition and not the plugin's argument (the transaction was aborted: the
   * store holds what it held). Writes succeed again once the disk has room (test/integration/faults-disk-full).
   */
  #write(pluginId: string, op: 'put' | 'delete', write: () => unknown): void {
    try {
      write();
    } catch (error) {
      throw new ReedError(
        'storage_write_failed',
        `storage ${op} of plugin "${pluginId}" failed: ${String((error as Error)?.message ?? error).slice(0, 200)}`,
        { pluginId, cause: error },
      );
    }
  }

  /** `<plugin id> NUL <key>` as bytes: ids and keys hold no NUL (PluginHostApi checks), so this is unambiguous. */
  #key(pluginId: string, key: string): Buffer {
    return Buffer.from(`${pluginId}\0${key}`);
  }

  #range(pluginId: string, prefix = '') {
    return { start: this.#key(pluginId, prefix), end: Buffer.from(`${pluginId}\x01`) };
  }

  #cost(pluginId: string, key: string, value: Uint8Array): number {
    return entrySize(pluginId, key, value, this.#pageBytes);
  }

  get(pluginId: string, key: string): Uint8Array | undefined {
    return this.#db.get(this.#key(pluginId, key));
  }

  put(pluginId: string, key: string, value: Uint8Array, quotaBytes: number): void {
    const old = this.get(pluginId, key);
    const used =
      this.usage(pluginId) -
      (old === undefined ? 0 : this.#cost(pluginId, key, old)) +
      this.#cost(pluginId, key, value);
    checkQuota(pluginId, used, quotaBytes);
    this.#reserve(pluginId, 'put', key.length * 3 + value.byteLength + this.#freed(old));
    this.#write(pluginId, 'put', () => this.#db.putSync(this.#key(pluginId, key), Buffer.from(value)));
    this.#usage.set(pluginId, used);
  }

  delete(pluginId: string, key: string): boolean {
    const old = this.get(pluginId, key);
    if (old === undefined) return false;
    this.#reserve(pluginId, 'delete', key.length * 3 + this.#freed(old));
    this.#write(pluginId, 'delete', () => this.#db.removeSync(this.#key(pluginId, key)));
    this.#usage.set(pluginId, this.usage(pluginId) - this.#cost(pluginId, key, old));
    return true;
  }

  list(pluginId: string, prefix: string, limit: number): string[] {
    const keys: string[] = [];
    const strip = Buffer.byteLength(pluginId) + 1;
    for (const key of this.#db.getKeys({ ...this.#range(pluginId, prefix), limit })) {
      const k = key.subarray(strip).toString('utf8');
      if (!k.startsWith(prefix)) break;
      keys.push(k);
    }
    return keys;
  }

  usage(pluginId: string): number {
    let used = this.#usage.get(pluginId);
    if (used === undefined) {
      used = 0;
      const strip = Buffer.byteLength(pluginId) + 1;
      for (const { key, value } of this.#db.getRange(this.#range(pluginId))) {
        used += this.#cost(pluginId, key.subarray(strip).toString('utf8'), value);
      }
      this.#usage.set(pluginId, used);
    }
    return used;
  }

  /** One seek per namespace: after each id, the next key at or past `<id> 0x01` starts the next one. */
  namespaces(): string[] {
    const ids: string[] = [];
    let start = Buffer.alloc(0);
    for (;;) {
      const [key] = [...this.#db.getKeys({ start, limit: 1 })];
      if (key === undefined) return ids;
      const at = key.indexOf(0);
      if (at <= 0) {
        // Not `<id> NUL <key>` (no writer makes one): step past it.
        start = Buffer.concat([key, Buffer.from([0])]);
        continue;
      }
      const id = key.subarray(0, at).toString('utf8');
      ids.push(id);
      start = Buffer.from(`${id}\x01`);
    }
  }

  close(): void {
    closeSync(this.#dataFd);
    this.#root.close();
  }
}
