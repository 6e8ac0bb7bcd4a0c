import { createHash, randomBytes } from 'node:crypto';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** The seed's CacheMetadata, plus what we need to trust an entry. */
export interface CacheMetadata {
  key: string;
  compiledSize: number;
  /** Milliseconds the preparation took. */
  compilationTime: number;
  compilerVersion: string;
  createdAt: string;
  /** SHA-256 of the stored bytes: a truncated or altered entry is detected and rebuilt. */
  sha256: string;
  /** Whatever the producer wants back with the bytes (for WASM: imports, exports, command or not). */
  info: unknown;
}

export interface CacheEntry {
  bytes: Uint8Array;
  metadata: CacheMetadata;
  hit: boolean;
}

export interface CompileCacheOptions {
  dir: string;
  /** Total bytes kept; least recently used entries go first. Default 512 MiB. */
  maxBytes?: number;
  logger?: Logger;
}

const KEY_RE = /^[0-9a-f]{64}$/;

/**
 * The seed's PluginCache, made safe: entries are addressed by a content hash of every input that changes the
 * output (the caller builds the key with {@link cacheKey}), never by plugin id and version; writes are atomic
 * (temporary file, then rename; metadata last); every read is verified against the stored SHA-256; the total
 * size is bounded; and concurrent requests for one key in this process prepare once. Processes sharing a
 * directory may both prepare a missing entry, but each rename is atomic, so readers never see half an entry.
 */
export class CompileCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly #logger: Logger | undefined;
  readonly #inFlight = new Map<string, Promise<CacheEntry>>();

  constructor(options: CompileCacheOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? 512 * 1024 * 1024;
    this.#logger = options.logger;
  }

  /** The entry for `key`, prepared by `produce` (once, however many callers ask at the same time) when missing. */
  get(
    key: string,
    produce: () => Promise<{ bytes: Uint8Array; info: unknown; compilerVersion: string }>,
  ): Promise<CacheEntry> {
    if (!KEY_RE.test(key)) throw new Error(`cache key must be a SHA-256 hex digest, got ${key}`);
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const work = (async () => {
      const cached = this.#read(key);
      if (cached !== undefined) return cached;
      const started = performance.now();
      const produced = await produce();
      const metadata: CacheMetadata = {
        key,
        compiledSize: produced.bytes.length,
        compilationTime: Math.round((performance.now() - started) * 1000) / 1000,
        compilerVersion: produced.compilerVersion,
        createdAt: new Date().toISOString(),
        sha256: sha256(produced.bytes),
        info: produced.info,
      };
      this.#write(key, produced.bytes, metadata);
      return { bytes: produced.bytes, metadata, hit: false };
    })();
    this.#inFlight.set(key, work);
    const clear = () => this.#inFlight.delete(key);
    work.then(clear, clear);
    return work;
  }

  #paths(key: string) {
    return { data: join(this.dir, `${key}.bin`), meta: join(this.dir, `${key}.json`) };
  }

  #read(key: string): CacheEntry | undefined {
    const { data, meta } = this.#paths(key);
    let metadata: CacheMetadata;
    let bytes: Uint8Array;
    try {
      metadata = JSON.parse(readFileSync(meta, 'utf8')) as CacheMetadata;
      bytes = readFileSync(data);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      this.#logger?.warn({ key, err: error }, 'compile cache entry unreadable; rebuilding it');
      this.#remove(key);
      return undefined;
    }
    if (metadata.key !== key || metadata.compiledSize !== bytes.length || metadata.sha256 !== sha256(bytes)) {
      this.#logger?.warn({ key }, 'compile cache entry corrupt (size or hash mismatch); rebuilding it');
      this.#remove(key);
      return undefined;
    }
    try {
      const now = new Date();
      utimesSync(meta, now, now); // recency for eviction
    } catch {}
    return { bytes, metadata, hit: true };
  }

  #write(key: string, bytes: Uint8Array, metadata: CacheMetadata): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const { data, meta } = this.#paths(key);
      const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      writeFileSync(data + suffix, bytes, { mode: 0o600 });
      renameSync(data + suffix, data);
      writeFileSync(meta + suffix, JSON.stringify(metadata), { mode: 0o600 });
      renameSync(meta + suffix, meta);
      this.#evict(key);
    } catch (error) {
      // A cache that cannot be written only costs speed.
      this.#logger?.warn({ key, err: error }, 'compile cache not written');
    }
  }

  #remove(key: string): void {
    const { data, meta } = this.#paths(key);
    for (const f of [meta, data]) {
      try {
        unlinkSync(f);
      } catch {}
    }
  }

  /** Removes least recently used entries until the total is within maxBytes; never the one just written. */
  #evict(keep: string): void {
    const entries: { key: string; size: number; used: number }[] = [];
    let total = 0;
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const key = name.slice(0, -5);
      try {
        const used = statSync(join(this.dir, name)).mtimeMs;
        const size = statSync(join(this.dir, `${key}.bin`)).size;
        entries.push({ key, size, used });
        total += size;
      } catch {}
    }
    entries.sort((a, b) => a.used - b.used);
    for (const e of entries) {
      if (total <= this.maxBytes) break;
      if (e.key === keep) continue;
      this.#remove(e.key);
      total -= e.size;
    }
  }
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A cache key over every input that changes the prepared output. */
export function cacheKey(parts: Record<string, string | number | boolean>, content: Uint8Array): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(Object.entries(parts).sort(([a], [b]) => (a < b ? -1 : 1))));
  hash.update('\0');
  hash.update(content);
  return hash.digest('hex');
}
