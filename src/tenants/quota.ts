import { ReedError } from '../errors.js';
import type { TenantQuotas } from '../tenant-quotas.js';

/** A quota's name as it appears in `quota_exceeded`'s details: the key of TenantQuotas it enforces. */
export type QuotaName = keyof TenantQuotas;

/**
 * A token bucket: `rate` tokens a second, at most `burst` held, full at the start. Time comes from `now`
 * (milliseconds, monotonic), so a test can drive it; the registry uses performance.now().
 */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #at: number;
  readonly #now: () => number;

  constructor(rate: number, burst: number, now: () => number = () => performance.now()) {
    this.rate = rate;
    this.burst = Math.max(1, burst);
    this.#tokens = this.burst;
    this.#now = now;
    this.#at = now();
  }

  /** Takes one token: undefined when it was there, else the milliseconds until one will be (at least 1). */
  take(): number | undefined {
    const now = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) * this.rate) / 1000);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / this.rate));
  }
}

/** A bucket for a per-second quota (burst: its own key when there is one, else the rate rounded up), or none. */
export function bucketFor(rate: number | undefined, burst?: number): TokenBucket | undefined {
  return rate === undefined ? undefined : new TokenBucket(rate, burst ?? Math.ceil(rate));
}

/**
 * `quota_exceeded` with `{ quota, limit, retryAfterMs }`: retryAfterMs is when a rate quota has room again, or null
 * when waiting alone does not free anything (storage, plugins) or the time is not known (calls in flight).
 */
export function quotaExceeded(
  tenant: string,
  quota: QuotaName,
  limit: number,
  what: string,
  retryAfterMs: number | null,
  pluginId?: string,
): ReedError {
  const retry = retryAfterMs === null ? '' : `; retry in ${retryAfterMs} ms`;
  // Without a stack: a refusal is an answer, not a fault, and its stack (the quota check's) tells nobody anything.
  // Capturing one was most of a refusal's cost (~17 us of CPU here), and a tenant flooding past its quotas makes
  // tens of thousands a second on the host's one thread, which the other tenants' calls wait for.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new ReedError(
      'quota_exceeded',
      `tenant "${tenant}"${pluginId === undefined ? '' : `, plugin "${pluginId}"`}: ${what}, above its quota ${quota} = ${limit}${retry}`,
      // A literal, not a spread: a spread of an object costs microseconds on Node 20.
      { pluginId, details: { tenant, quota, limit, retryAfterMs } },
    );
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}
