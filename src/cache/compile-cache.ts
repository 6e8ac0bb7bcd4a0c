import { createHash, randomBytes } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { MARK_PATTERN, markOwnerGone, ownMark } from '../process-identity.js';

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
  /** Whether the directory is the host's alone (decided on first use; see {@link privateDirProblem}). */
  #usable: boolean | undefined;

  constructor(options: CompileCacheOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? 512 * 1024 * 1024;
    this.#logger = options.logger;
  }

  /**
   * A cache entry is run as prepared code (instrumented, checked) without being prepared again, and its checksum
   * only catches accidents: whoever can write the directory can plant an entry with its own checksum. So the cache
   * is used only when nobody but this process's user can write the directory or any directory above it (or
   * replace it); otherwise it is off, with a `cache_insecure` warning, and modules are prepared every time.
   */
  #trusted(): boolean {
    if (this.#usable === undefined) {
      let problem: string | undefined;
      try {
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
        problem = privateDirProblem(this.dir);
      } catch (error) {
        problem = (error as Error).message;
      }
      if (problem !== undefined) {
        this.#logger?.warn(
          { code: 'cache_insecure', dir: this.dir, why: problem },
          `compile cache ${this.dir} is not used: ${problem}; make it the host user's own, mode 0700`,
        );
      }
      this.#usable = problem === undefined;
      if (this.#usable) this.#removeStale();
    }
    return this.#usable;
  }

  /**
   * Temporary files of writers that died between writing and renaming (a host killed with SIGKILL): never read,
   * but never removed either, and not counted by the size bound. Those of a process that is gone are removed on
   * first use; a live one's (another host sharing the directory) are its work in progress and are left.
   */
  #removeStale(): void {
    try {
      for (const name of readdirSync(this.dir)) {
        const m = STALE_RE.exec(name);
        if (m === null || !markOwnerGone(m[1] as string, Number(m[2]), m[3] as string)) continue;
        try {
          unlinkSync(join(this.dir, name));
        } catch {}
      }
    } catch {}
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
      const trusted = this.#trusted();
      const cached = trusted ? this.#read(key) : undefined;
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
      if (trusted) this.#write(key, produced.bytes, metadata);
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
      const suffix = `.tmp-${ownMark()}-${randomBytes(4).toString('hex')}`;
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

/** A writer's temporary file: `<key>.(bin|json).tmp-<its mark>-<8 hex>` (see #write; src/process-identity.ts). */
const STALE_RE = new RegExp(`^[0-9a-f]{64}\\.(?:bin|json)\\.tmp-${MARK_PATTERN}-[0-9a-f]{8}$`);

/**
 * Why `dir` is not private to this process's user, or undefined when it is: it must be a directory (not a link)
 * owned by the effective uid with no group or other write bit, and every directory above its real path must be
 * owned by root or that uid and not writable by group or others unless sticky (as /tmp is: there nobody else can
 * rename or remove what is ours). The rule OpenSSH applies to its key files.
 */
export function privateDirProblem(dir: string): string | undefined {
  const uid = process.geteuid?.() ?? 0;
  const own = lstatSync(dir);
  if (own.isSymbolicLink() || !own.isDirectory()) return `${dir} is not a directory`;
  if (own.uid !== uid) return `${dir} is owned by uid ${own.uid}, not ${uid}`;
  if ((own.mode & 0o022) !== 0)
    return `${dir} is writable by group or others (mode ${(own.mode & 0o7777).toString(8)})`;
  for (let d = dirname(realpathSync(dir)); ; d = dirname(d)) {
    const st = lstatSync(d);
    if (st.uid !== 0 && st.uid !== uid) return `${d} is owned by uid ${st.uid}`;
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
      return `${d} is writable by group or others and not sticky (mode ${(st.mode & 0o7777).toString(8)})`;
    if (dirname(d) === d) return undefined;
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
