import { mkdirSync } from 'node:fs';
import { type Database, open, type RootDatabase } from 'lmdb';
import { checkQuota, entrySize, type StorageService } from './services.js';

/**
 * The default, persistent StorageService: one LMDB environment (`<data_dir>/storage`), keys namespaced as
 * `<plugin id> NUL <key>`. LMDB installs from the npm registry as a prebuilt binary, reads are synchronous
 * memory-mapped lookups, and writes are synchronous transactions, so a plugin's call stays on its thread.
 */
export class LmdbStorage implements StorageService {
  readonly #root: RootDatabase;
  readonly #db: Database<Uint8Array, string>;
  readonly #usage = new Map<string, number>();

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#root = open({ path: dir, compression: false });
    this.#db = this.#root.openDB<Uint8Array, string>({
      name: 'plugin-storage',
      encoding: 'binary',
      keyEncoding: 'ordered-binary',
    });
  }

  #range(pluginId: string, prefix = '') {
    return { start: `${pluginId}\0${prefix}`, end: `${pluginId}\x01` };
  }

  get(pluginId: string, key: string): Uint8Array | undefined {
    return this.#db.get(`${pluginId}\0${key}`);
  }

  put(pluginId: string, key: string, value: Uint8Array, quotaBytes: number): void {
    const old = this.get(pluginId, key);
    const used = this.usage(pluginId) - (old === undefined ? 0 : entrySize(key, old)) + entrySize(key, value);
    checkQuota(pluginId, used, quotaBytes);
    this.#db.putSync(`${pluginId}\0${key}`, Buffer.from(value));
    this.#usage.set(pluginId, used);
  }

  delete(pluginId: string, key: string): boolean {
    const old = this.get(pluginId, key);
    if (old === undefined) return false;
    this.#db.removeSync(`${pluginId}\0${key}`);
    this.#usage.set(pluginId, this.usage(pluginId) - entrySize(key, old));
    return true;
  }

  list(pluginId: string, prefix: string, limit: number): string[] {
    const keys: string[] = [];
    const strip = pluginId.length + 1;
    for (const key of this.#db.getKeys({ ...this.#range(pluginId, prefix), limit })) {
      const k = (key as string).slice(strip);
      if (!k.startsWith(prefix)) break;
      keys.push(k);
    }
    return keys;
  }

  usage(pluginId: string): number {
    let used = this.#usage.get(pluginId);
    if (used === undefined) {
      used = 0;
      const strip = pluginId.length + 1;
      for (const { key, value } of this.#db.getRange(this.#range(pluginId))) {
        used += entrySize((key as string).slice(strip), value);
      }
      this.#usage.set(pluginId, used);
    }
    return used;
  }

  close(): void {
    this.#root.close();
  }
}
