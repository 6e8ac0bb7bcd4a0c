import { ReedError, type ReedErrorOptions } from '../../errors.js';
import type { TenantIdentity } from '../../tenant-quotas.js';

/**
 * A refusal without a stack, as the tenant layer's quotaExceeded makes them: a refusal is an answer, and capturing
 * a stack was most of its cost on the host's one thread, which a tenant refused tens of thousands of times a
 * second would otherwise take from the others.
 */
function refusal(message: string, options: ReedErrorOptions): ReedError {
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new ReedError('quota_exceeded', message, options);
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** The first hold after a churn (see TenantMemory.churned), doubled at each churn that follows soon, up to MAX. */
export const CHURN_BACKOFF_MS = 50;
export const CHURN_BACKOFF_MAX_MS = 2_000;
/** A churn this long after the last hold ended starts again from CHURN_BACKOFF_MS. */
export const CHURN_FORGET_MS = 10_000;

interface Hold {
  until: number;
  ms: number;
  /** What the others left the instance when it churned: more room now (another instance shrank or left) lifts it. */
  room: number;
}

/**
 * Mode none's share of a tenant's memory_mb: the WASM memories of all the tenant's instances in this host (its
 * backends serve one tenant) together. Each instance asks, before each run and when it is made, how far its own
 * memory may grow: the quota less what the others hold now. Mode none runs one call at a time on the host's
 * thread, so no other instance grows while a run holds its answer.
 */
export class TenantMemory {
  readonly #holders = new Set<{ memoryBytes(): number }>();
  readonly #holds = new WeakMap<object, Hold>();

  constructor(
    readonly limitMb: number,
    readonly tenant?: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * An instance that failed after a refused grow and was dropped (a C program aborting on a failed malloc, say)
   * is held back: its plugin's calls are refused with quota_exceeded (memory_mb, retryAfterMs) for
   * CHURN_BACKOFF_MS, doubled at each churn that follows, up to CHURN_BACKOFF_MAX_MS. Otherwise a tenant calling
   * it in a loop makes the host trap, instantiate and collect the dropped memories (full garbage collections of
   * tens of ms each, measured) as fast as it can call, on the thread every other tenant's calls need, and no
   * quota of its own counts any of it. The hold ends early when the tenant's other instances leave it more room.
   */
  churned(holder: object, _pluginId: string): void {
    const now = this.now();
    const last = this.#holds.get(holder);
    const ms =
      last !== undefined && now - last.until < CHURN_FORGET_MS
        ? Math.min(CHURN_BACKOFF_MAX_MS, last.ms * 2)
        : CHURN_BACKOFF_MS;
    this.#holds.set(holder, { until: now + ms, ms, room: this.bytesFor(holder) });
  }

  /** Throws quota_exceeded while `holder` is held back after a churn (see churned). */
  admit(holder: object, pluginId: string): void {
    const hold = this.#holds.get(holder);
    if (hold === undefined) return;
    const now = this.now();
    if (now >= hold.until || this.bytesFor(holder) > hold.room) return;
    const retryAfterMs = Math.max(1, Math.ceil(hold.until - now));
    throw refusal(
      `plugin "${pluginId}" was not called: its last call failed after its tenant's memory quota (memory_mb = ${this.limitMb}) refused a memory.grow, and its instance was dropped; retry in ${retryAfterMs} ms`,
      {
        pluginId,
        details: { tenant: this.tenant, quota: 'memory_mb', limit: this.limitMb, retryAfterMs },
      },
    );
  }

  add(holder: { memoryBytes(): number }): () => void {
    this.#holders.add(holder);
    return () => this.#holders.delete(holder);
  }

  bytesFor(holder: object): number {
    let others = 0;
    for (const h of this.#holders) if (h !== holder) others += h.memoryBytes();
    return this.limitMb * 1024 * 1024 - others;
  }

  /** What the tenant's instances hold now. */
  bytes(): number {
    let total = 0;
    for (const h of this.#holders) total += h.memoryBytes();
    return total;
  }
}

/**
 * Mode none's CPU share: fuel_per_second, a token bucket of fuel across all the tenant's calls in this host, one
 * second deep. A call starts only while the bucket holds fuel and is charged what it used when it ends (returned
 * or failed), so one call may overdraw it by at most its fuel_per_call; the calls after it then wait out the
 * debt. A call that finds the bucket empty is refused with quota_exceeded and `retryAfterMs` (when it will have
 * fuel again) rather than held: a held call would keep its input and its place in the tenant's concurrency while
 * it waits, and the caller (HTTP 429 with Retry-After) is the one who can decide to wait.
 */
export class FuelBudget {
  #balance: number;
  #at: number;

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
    readonly tenant?: string,
  ) {
    this.#balance = perSecond;
    this.#at = now();
  }

  #refill(): void {
    const t = this.now();
    this.#balance = Math.min(this.perSecond, this.#balance + ((t - this.#at) / 1000) * this.perSecond);
    this.#at = t;
  }

  /** Throws quota_exceeded when the tenant's fuel for this second is spent. */
  admit(pluginId: string): void {
    this.#refill();
    if (this.#balance > 0) return;
    const retryAfterMs = Math.max(1, Math.ceil(((1 - this.#balance) / this.perSecond) * 1000));
    throw refusal(
      `plugin "${pluginId}" was not called: its tenant used its fuel for now (fuel_per_second = ${this.perSecond}); retry in ${retryAfterMs} ms`,
      // A literal, not a spread (a spread of an object costs microseconds on Node 20).
      {
        pluginId,
        details: { tenant: this.tenant, quota: 'fuel_per_second', limit: this.perSecond, retryAfterMs },
      },
    );
  }

  charge(fuel: number): void {
    this.#refill();
    this.#balance -= fuel;
  }

  /** Fuel left in the bucket now (negative: the debt a call ran up). */
  balance(): number {
    this.#refill();
    return this.#balance;
  }
}

/** The budgets a tenant's quotas ask of mode none (none for an absent key). */
export function tenantBudgets(tenant: TenantIdentity | undefined): {
  memory: TenantMemory | undefined;
  fuel: FuelBudget | undefined;
} {
  const q = tenant?.quotas;
  return {
    memory: q?.memory_mb === undefined ? undefined : new TenantMemory(q.memory_mb, tenant?.id),
    fuel:
      q?.fuel_per_second === undefined ? undefined : new FuelBudget(q.fuel_per_second, undefined, tenant?.id),
  };
}
