import { ReedError } from '../errors.js';

/** `[lifecycle] max_concurrent_installs`'s default: archives taken in (extracted, scanned, kept) at once. */
export const DEFAULT_MAX_CONCURRENT_INSTALLS = 2;
/** `[lifecycle] install_queue`'s default: installs that may wait for a slot before more are refused. */
export const DEFAULT_INSTALL_QUEUE = 16;
/**
 * Installs one owner (a tenant's host) may have taking in or waiting at once: past it, its next is refused
 * (`install_busy`) whatever the queue holds. Without it one tenant trickling uploads (a slot is held while the body
 * is read, up to the API's 60 s request timeout) at its lifecycle rate could hold every slot and queue place, and
 * every other tenant was refused (the seventh review).
 */
export const INSTALLS_PER_OWNER = 2;

/**
 * The host-wide bound on plugin archives taken in at once (src/host/install.ts, `stageArchive`: extraction, the two
 * scans, the fsynced copy), shared by every tenant's PluginHost (src/tenants/registry.ts makes one): each intake
 * writes and fsyncs up to `[files] max_files` files on libuv's threads and walks them on a discovery worker, so N
 * tenants uploading at once would otherwise make N of each. Past `max` intakes, an install waits in a queue (first
 * come, first served) of at most `queue`; one more is refused at once with `install_busy` (HTTP 503, Retry-After).
 * Only the intake holds a slot: starting the new version (and an upgrade's drain, up to `drain_timeout_ms`) does not.
 */
export class InstallSlots {
  readonly max: number;
  readonly queue: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  /** Each owner's installs taking in or waiting (INSTALLS_PER_OWNER). */
  readonly #owners = new Map<object, number>();

  /** `max` at least 1, `queue` at least 0 (0: no waiting, refused at once when every slot is taken). */
  constructor(max = DEFAULT_MAX_CONCURRENT_INSTALLS, queue = DEFAULT_INSTALL_QUEUE) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max must be an integer >= 1, not ${max}`);
    if (!Number.isInteger(queue) || queue < 0)
      throw new RangeError(`queue must be an integer >= 0, not ${queue}`);
    this.max = max;
    this.queue = queue;
  }

  /** Intakes holding a slot now. */
  get active(): number {
    return this.#active;
  }

  /** Installs waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Runs `work` in a slot, once one is free; the slot is given back when it settles. Rejects with `install_busy`,
   * without calling `work`, when every slot is taken and the queue is full (`pluginId` names the install refused),
   * or when `owner` (a tenant's host) already has INSTALLS_PER_OWNER taking in or waiting.
   */
  async run<T>(work: () => Promise<T>, pluginId?: string, owner?: object): Promise<T> {
    const held = owner === undefined ? 0 : (this.#owners.get(owner) ?? 0);
    if (held >= INSTALLS_PER_OWNER)
      throw new ReedError(
        'install_busy',
        `this tenant already has ${held} plugin archive(s) being taken in or waiting, as many as one tenant may (${INSTALLS_PER_OWNER}): retry when one is done`,
        {
          ...(pluginId === undefined ? {} : { pluginId }),
          details: { installsPerTenant: INSTALLS_PER_OWNER, retryAfterMs: 1_000 },
        },
      );
    if (this.#active >= this.max) {
      if (this.#waiting.length >= this.queue)
        throw new ReedError(
          'install_busy',
          `the host is taking in ${this.max} plugin archive(s) and ${this.#waiting.length} more wait, as many as it allows ([lifecycle] max_concurrent_installs, install_queue): retry later`,
          {
            ...(pluginId === undefined ? {} : { pluginId }),
            details: { maxConcurrentInstalls: this.max, installQueue: this.queue, retryAfterMs: 1_000 },
          },
        );
      if (owner !== undefined) this.#owners.set(owner, held + 1);
      // The slot is handed over by the one that leaves it (#active stays counted), so nobody overtakes the queue.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      if (owner !== undefined) this.#owners.set(owner, held + 1);
      this.#active++;
    }
    try {
      return await work();
    } finally {
      if (owner !== undefined) {
        const left = (this.#owners.get(owner) ?? 1) - 1;
        if (left > 0) this.#owners.set(owner, left);
        else this.#owners.delete(owner);
      }
      const next = this.#waiting.shift();
      if (next === undefined) this.#active--;
      else next();
    }
  }
}
