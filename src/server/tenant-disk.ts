// Disk bytes per tenant (issue 15): what the plugins of each tenant hold in their data directories
// (`<tenant data dir>/files/<plugin id>/`), measured at scrape by the walk the WASI disk quota counts with
// (src/runtime/wasm/wasi-quota.ts: one descriptor at a time, no symlink ever followed, each inode once, no mount
// entered), so the figure is the quota's own measure. Bounded: a tenant is walked again at most every
// `everyMs`, and one scrape reads at most `entriesPerScrape` directory entries in all (the oldest figures first,
// a tenant too large for them last, so it cannot starve the others); a tenant whose walk runs out of them is marked
// capped, not given a figure that would be short.
import { join } from 'node:path';
import { DATA_FILES_DIR } from '../manifest/data-dir.js';
import { AT_FDCWD, cPath, lastErrno, loadLibc, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW } from '../runtime/libc.js';
import { walk } from '../runtime/wasm/wasi-quota.js';

export const DISK_MEASURE_EVERY_MS = 60_000;
export const DISK_ENTRIES_PER_SCRAPE = 50_000;
const ENOENT = 2;

export interface TenantDiskFigure {
  /** Bytes of the regular files (st_size, each inode once) and of the directories themselves; undefined when capped. */
  bytes: number | undefined;
  /** Entries read (files, directories, links). */
  entries: number;
  /** The walk ran out of the scrape's entries before it was done. */
  capped: boolean;
  /** When it was measured, on `now`'s clock. */
  at: number;
}

export interface TenantDiskOptions {
  everyMs?: number;
  entriesPerScrape?: number;
  now?: () => number;
}

/** Thrown by the walk's charge when the scrape's entries are spent. */
const SPENT = Symbol('spent');

export class TenantDiskMeter {
  readonly #everyMs: number;
  readonly #entriesPerScrape: number;
  readonly #now: () => number;
  readonly #figures = new Map<string, TenantDiskFigure>();

  constructor(options: TenantDiskOptions = {}) {
    this.#everyMs = options.everyMs ?? DISK_MEASURE_EVERY_MS;
    this.#entriesPerScrape = options.entriesPerScrape ?? DISK_ENTRIES_PER_SCRAPE;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The figure of each tenant of `dataDirs` (tenant -> its data dir), those older than `everyMs` measured again
   * first while the scrape's entries last. A tenant no longer listed is forgotten.
   */
  measure(dataDirs: ReadonlyMap<string, string>): ReadonlyMap<string, TenantDiskFigure> {
    for (const tenant of [...this.#figures.keys()]) if (!dataDirs.has(tenant)) this.#figures.delete(tenant);
    const now = this.#now();
    const due = [...dataDirs.keys()]
      .filter((tenant) => {
        const figure = this.#figures.get(tenant);
        return figure === undefined || now - figure.at >= this.#everyMs;
      })
      .sort((a, b) => this.#priority(a) - this.#priority(b));
    let left = this.#entriesPerScrape;
    for (const tenant of due) {
      if (left <= 0) break;
      const figure = measureDir(join(dataDirs.get(tenant) as string, DATA_FILES_DIR), left, now);
      if (figure === undefined) continue; // moved while walked, or unreadable: the last figure stays
      left -= figure.entries;
      this.#figures.set(tenant, figure);
    }
    return this.#figures;
  }

  /** Lowest first: never measured, then the oldest figures; a tenant too large for a scrape after the others. */
  #priority(tenant: string): number {
    const figure = this.#figures.get(tenant);
    if (figure === undefined) return Number.MIN_SAFE_INTEGER;
    return figure.capped ? Number.MAX_SAFE_INTEGER / 2 + figure.at : figure.at;
  }
}

/** One walk of `dir` reading at most `budget` entries; undefined when it could not be read. */
function measureDir(dir: string, budget: number, at: number): TenantDiskFigure | undefined {
  const libc = loadLibc();
  const root = libc.openat(AT_FDCWD, cPath(dir), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0) as number;
  if (root < 0) {
    // No plugin has written anything yet: nothing on disk.
    return lastErrno() === ENOENT ? { bytes: 0, entries: 0, capped: false, at } : undefined;
  }
  let entries = 0;
  try {
    const counted = walk(root, {
      charge: () => {
        if (++entries > budget) throw SPENT;
      },
      exceeded: () => {},
    });
    return { bytes: counted.bytes, entries: counted.entries, capped: false, at };
  } catch (error) {
    if (error === SPENT) return { bytes: undefined, entries: budget, capped: true, at };
    return undefined;
  } finally {
    libc.close(root);
  }
}
