import { ReedError } from '../errors.js';

/** `[lifecycle] max_concurrent_installs`'s default: archives taken in (extracted, scanned, kept) at once. */
export const DEFAULT_MAX_CONCURRENT_INSTALLS = 2;
/** `[lifecycle] install_queue`'s default: installs that may wait for a slot before more are refused. */
export const DEFAULT_INSTALL_QUEUE = 16;

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
   * without calling `work`, when every slot is taken and the queue is full (`pluginId` names the install refused).
   */
  async run<T>(work: () => Promise<T>, pluginId?: string): Promise<T> {
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
      // The slot is handed over by the one that leaves it (#active stays counted), so nobody overtakes the queue.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active++;
    }
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next === undefined) this.#active--;
      else next();
    }
  }
}
