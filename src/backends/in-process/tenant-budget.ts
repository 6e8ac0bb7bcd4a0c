import { ReedError } from '../../errors.js';
import type { TenantIdentity } from '../../tenant-quotas.js';

/**
 * Mode none's share of a tenant's memory_mb: the WASM memories of all the tenant's instances in this host (its
 * backends serve one tenant) together. Each instance asks, before each run and when it is made, how far its own
 * memory may grow: the quota less what the others hold now. Mode none runs one call at a time on the host's
 * thread, so no other instance grows while a run holds its answer.
 */
export class TenantMemory {
  readonly #holders = new Set<{ memoryBytes(): number }>();

  constructor(
    readonly limitMb: number,
    readonly tenant?: string,
  ) {}

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
    throw new ReedError(
      'quota_exceeded',
      `plugin "${pluginId}" was not called: its tenant used its fuel for now (fuel_per_second = ${this.perSecond}); retry in ${retryAfterMs} ms`,
      {
        pluginId,
        details: {
          ...(this.tenant === undefined ? {} : { tenant: this.tenant }),
          quota: 'fuel_per_second',
          limit: this.perSecond,
          retryAfterMs,
        },
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
