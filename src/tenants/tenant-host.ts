import type { Readable } from 'node:stream';
import type { CallOptions, CallOutcome } from '../backends/sandbox.js';
import { ReedError } from '../errors.js';
import type { PluginHost, PluginStatus, RemoveOptions } from '../host/plugin-host.js';
import { DEFAULT_LIFECYCLE_PER_SECOND, LIFECYCLE_BURST } from '../tenant-quotas.js';
import { Accounting, addUsage, emptyUsage } from './accounting.js';
import { bucketFor, type QuotaName, quotaExceeded, TokenBucket } from './quota.js';
import { DEFAULT_TENANT, type Tenant, type TenantSpec, type TenantUsage } from './tenant.js';
import type { TenantEventBus, TenantStorage } from './tenant-services.js';
import type { TenantVolume } from './tenant-volume.js';

/**
 * What a tenant's calls may take of the host's one thread in one turn of the event loop, milliseconds: its calls
 * that arrive once its first call of this turn started this long ago start in a later turn (setImmediate), after the
 * timers and the I/O every other tenant's calls arrive by. A call in mode none runs to its end on the host's
 * thread, and one made as another returns (a client awaiting in a loop, or many calls at once) used to start at
 * once, so a tenant with work queued ran on (its calls per second's burst, its fuel per second's second, back to
 * back) while the others' calls waited: this bounds each of its stretches to about the slice and one call. The
 * slice is the time since the turn's first call started, not only the calls' own: what runs as each call returns
 * (its promise's reactions, the caller's next call) is the tenant's stretch too (counting the calls alone let a
 * stretch run to about twice the slice). 0.2 ms: the other tenants' calls due meanwhile wait at most about that.
 */
export const TURN_SLICE_MS = 0.2;

/**
 * A call of a function that lately took longer on the host's thread than what is left of the tenant's slice starts
 * only as the first call of a turn: otherwise one started just before the slice ran out ran on past it by its whole
 * length (the tenants bench: a spin of ~0.5 ms started 0.19 ms into the slice held the thread ~0.7 ms, while the
 * other tenants' calls due meanwhile waited). What a function took: at its start (mode none runs the call there to
 * its end; other modes, the start), the longest lately (a shorter run takes back a quarter of the difference). At
 * most CALL_ESTIMATES functions are remembered per tenant (callers name them; past that the memory starts over).
 */
export const CALL_ESTIMATES = 256;

/**
 * Refusals of a tenant's calls answered at once: PROMPT_REFUSALS_PER_SECOND, PROMPT_REFUSALS_BURST at once. Past
 * that (a client resending at once whatever the answer), its refusals are held and answered REFUSAL_HOLD_MS later,
 * RELEASED_PER_TURN in each turn of the event loop from then on, at most MAX_HELD_REFUSALS waiting (more are
 * answered at once): a refusal is cheap, but a client that resends as soon as it is answered is refused as fast as
 * the host's one thread answers (55,000-79,000 refusals a second in the tenants bench, about a third of the thread);
 * held, its refusals come at most one per caller each REFUSAL_HOLD_MS. A few a turn: each answer runs its caller's
 * code on that thread (32 answered together took 150-300 us of it in the tenants bench, a stretch the other
 * tenants' calls waited for).
 */
export const PROMPT_REFUSALS_PER_SECOND = 1_000;
export const PROMPT_REFUSALS_BURST = 100;
export const REFUSAL_HOLD_MS = 5;
export const RELEASED_PER_TURN = 4;
export const MAX_HELD_REFUSALS = 1_024;

/** Failures of a call that never ran the plugin: answered as they are, a full file system or not. */
const NOT_RUN: ReadonlySet<string> = new Set([
  'plugin_not_found',
  'function_not_found',
  'host_closed',
  'quota_exceeded',
]);

/** A call admitted and waiting for a later turn of the event loop (see TURN_SLICE_MS). */
interface Queued {
  pluginId: string;
  fn: string;
  bytes: Uint8Array;
  options: CallOptions | undefined;
  /** Settles the caller's promise as the call's own outcome. */
  resolve: (outcome: Promise<CallOutcome>) => void;
}

/**
 * One tenant: its PluginHost behind its admission quotas (calls in flight, calls per second, plugins), with its
 * accounting. Storage and events quotas are in its services (tenant-services.ts), so a plugin meets them too.
 */
export class TenantHost implements Tenant {
  readonly id: string;
  readonly origin: Tenant['origin'];
  readonly spec: TenantSpec;
  readonly host: PluginHost;
  readonly storage: TenantStorage;
  readonly events: TenantEventBus;
  /** Its own file system for files/ (quotas.filesystem_bytes), mounted while it runs. */
  readonly volume: TenantVolume | undefined;
  readonly accounting = new Accounting();
  readonly #calls: TokenBucket | undefined;
  /** lifecycle_per_second's bucket (installs, removals, reloads), and its rate. */
  readonly #lifecycle: TokenBucket | undefined;
  readonly #lifecycleRate: number;
  #inFlight = 0;
  /** Ids being installed now (max_plugins). */
  readonly #installing = new Set<string>();
  /** When its first call of this turn of the event loop started (see TURN_SLICE_MS; 0: none yet), and the turn's end. */
  #turnStart = 0;
  #turnOpen = false;
  /** Calls admitted past the slice, oldest first, from #queueHead (see TURN_SLICE_MS). */
  #queue: Queued[] = [];
  #queueHead = 0;
  /** What each function's calls took at their start lately, ms, by plugin then function (see CALL_ESTIMATES). */
  readonly #took = new Map<string, Map<string, number>>();
  #tookCount = 0;
  /** Calls that started (not refused) in later turns because of the slice, since the start: what it did. */
  deferredCalls = 0;
  /**
   * Until when (performance.now()) the tenant's fuel_per_second is known spent, and its limit: a sandbox refused
   * a call for it with the time it will have fuel again, and until then every call is refused here, before the
   * host's call path (0: not known spent).
   */
  #fuelSpentUntil = 0;
  #fuelLimit = 0;
  /** Refusals answered at once, and those held for the next REFUSAL_HOLD_MS (see PROMPT_REFUSALS_PER_SECOND). */
  readonly #promptRefusals = bucketFor(PROMPT_REFUSALS_PER_SECOND, PROMPT_REFUSALS_BURST) as TokenBucket;
  /** Held refusals, oldest first from #heldHead; those up to #heldDue are due (their REFUSAL_HOLD_MS is past). */
  #held: (() => void)[] = [];
  #heldHead = 0;
  #heldDue = 0;
  #heldTimer: NodeJS.Timeout | undefined;
  #releasing = false;
  /** Refusals that were held (see PROMPT_REFUSALS_PER_SECOND), since the start. */
  heldRefusals = 0;

  constructor(
    id: string,
    origin: Tenant['origin'],
    spec: TenantSpec,
    host: PluginHost,
    storage: TenantStorage,
    events: TenantEventBus,
    volume?: TenantVolume,
  ) {
    this.id = id;
    this.volume = volume;
    this.origin = origin;
    this.spec = spec;
    this.host = host;
    this.storage = storage;
    this.events = events;
    this.#calls = bucketFor(spec.quotas?.calls_per_second, spec.quotas?.calls_burst);
    const lifecycle =
      spec.quotas?.lifecycle_per_second ?? (id === DEFAULT_TENANT ? undefined : DEFAULT_LIFECYCLE_PER_SECOND);
    this.#lifecycleRate = lifecycle ?? 0;
    this.#lifecycle =
      lifecycle === undefined
        ? undefined
        : new TokenBucket(lifecycle, Math.max(LIFECYCLE_BURST, Math.ceil(lifecycle)));
  }

  /** Installs, removals and reloads (lifecycle_per_second): refused past the bucket, before anything is done. */
  #admitLifecycle(what: string, pluginId: string): void {
    const wait = this.#lifecycle?.take();
    if (wait !== undefined)
      throw this.#deny('lifecycle_per_second', this.#lifecycleRate, `${what} "${pluginId}"`, wait, pluginId);
  }

  get quotas() {
    return this.spec.quotas ?? {};
  }

  #deny(
    quota: QuotaName,
    limit: number,
    what: string,
    retryAfterMs: number | null,
    pluginId?: string,
  ): ReedError {
    this.accounting.deny(quota);
    return quotaExceeded(this.id, quota, limit, what, retryAfterMs, pluginId);
  }

  call(
    pluginId: string,
    fn: string,
    input: Uint8Array | string = new Uint8Array(0),
    options?: CallOptions,
  ): Promise<CallOutcome> {
    const max = this.quotas.max_concurrent_calls;
    if (max !== undefined && this.#inFlight >= max)
      return this.#refuse(
        this.#deny('max_concurrent_calls', max, `${this.#inFlight} calls are in flight`, null, pluginId),
      );
    if (this.#fuelSpentUntil !== 0) {
      const wait = this.#fuelSpentUntil - performance.now();
      if (wait > 0)
        return this.#refuse(
          this.#deny(
            'fuel_per_second',
            this.#fuelLimit,
            'its fuel for now is spent',
            Math.max(1, Math.ceil(wait)),
            pluginId,
          ),
        );
      this.#fuelSpentUntil = 0;
    }
    if (this.#calls !== undefined) {
      const wait = this.#calls.take();
      if (wait !== undefined)
        return this.#refuse(
          this.#deny(
            'calls_per_second',
            this.#calls.rate,
            'a call is past its calls per second',
            wait,
            pluginId,
          ),
        );
    }
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    this.#inFlight++;
    const started = performance.now();
    const settle = (code: string, fuel: number, out: number) => {
      this.#inFlight--;
      // Per plugin only for a plugin the host has: callers cannot grow the accounting by making up ids.
      const known = code === 'ok' || this.#has(pluginId);
      this.accounting.call(pluginId, known, code, performance.now() - started, fuel, bytes.byteLength, out);
    };
    let outcome: Promise<CallOutcome>;
    if (this.#queueHead === this.#queue.length && this.#fits(pluginId, fn))
      outcome = this.#start(pluginId, fn, bytes, options);
    // Past its slice of this turn (or behind calls that are): it starts in a later turn, still counted in flight.
    else
      outcome = new Promise<CallOutcome>((resolve) => {
        this.#queue.push({ pluginId, fn, bytes, options, resolve });
      });
    return outcome.then(
      (result) => {
        settle('ok', result.stats.fuelConsumed, result.output.byteLength);
        return result;
      },
      (failure: unknown) => {
        const error = this.#filesystemRefusal(failure, pluginId);
        settle(error instanceof ReedError ? error.code : 'internal_error', 0, 0);
        if (error instanceof ReedError && error.code === 'quota_exceeded') {
          this.#noteFuelSpent(error);
          // A refusal to retry later (memory_mb's hold after a churn, fuel_per_second) from the sandbox: answered
          // as one at admission is (see PROMPT_REFUSALS_PER_SECOND), or a client resending at once makes the host
          // refuse it through the whole call path as fast as its thread can.
          if (typeof error.details?.retryAfterMs === 'number') return this.#refuse(error);
        }
        throw error;
      },
    );
  }

  /**
   * A call that failed because the tenant's file system is full (quotas.filesystem_bytes) answers quota_exceeded:
   * when its WASI layer met the full file system in that call (`filesystem_full`, from the runtime in any mode:
   * a runner's claim concerns its own call only, and the details are the host's), or when the file system is full
   * now (the host's own statfs: a native plugin, a container). Any other failure is answered as it is.
   */
  #filesystemRefusal(error: unknown, pluginId: string): unknown {
    const volume = this.volume;
    const limit = this.quotas.filesystem_bytes;
    if (volume === undefined || limit === undefined) return error;
    if (error instanceof ReedError && error.code === 'quota_exceeded') return error;
    const code = error instanceof ReedError ? error.code : 'internal_error';
    if (code !== 'filesystem_full' && (NOT_RUN.has(code) || !volume.full())) return error;
    const refusal = this.#deny(
      'filesystem_bytes',
      limit,
      `plugin "${pluginId}" failed with its tenant's file system full`,
      null,
      pluginId,
    );
    return new ReedError(refusal.code, refusal.message, {
      pluginId,
      cause: error,
      details: { ...refusal.details, causeCode: code },
    });
  }

  /**
   * A refusal of a call: at once, or held REFUSAL_HOLD_MS and answered with the others then, RELEASED_PER_TURN a
   * turn (see PROMPT_REFUSALS_PER_SECOND).
   */
  #refuse(error: ReedError): Promise<never> {
    if (this.#promptRefusals.take() === undefined || this.#held.length - this.#heldHead >= MAX_HELD_REFUSALS)
      return Promise.reject(error);
    this.heldRefusals++;
    return new Promise<never>((_, reject) => {
      this.#held.push(() => reject(error));
      this.#heldTimer ??= setTimeout(this.#holdOver, REFUSAL_HOLD_MS);
    });
  }

  /** The hold is over for the refusals held until now: they are answered, a few a turn; later ones wait their own. */
  readonly #holdOver = () => {
    this.#heldTimer = undefined;
    this.#heldDue = this.#held.length;
    if (!this.#releasing) this.#release();
  };

  readonly #release = () => {
    const held = this.#held;
    const end = Math.min(this.#heldDue, this.#heldHead + RELEASED_PER_TURN);
    while (this.#heldHead < end) {
      const answer = held[this.#heldHead] as () => void;
      held[this.#heldHead++] = undefined as unknown as () => void;
      answer();
    }
    if (this.#heldHead < this.#heldDue) {
      this.#releasing = true;
      setImmediate(this.#release);
      return;
    }
    this.#releasing = false;
    // Those held meanwhile wait for their own hold (its timer was set with the first of them).
    this.#held = held.slice(this.#heldHead);
    this.#heldHead = 0;
    this.#heldDue = 0;
  };

  /** A sandbox refused a call for the tenant's fuel_per_second: the calls until it has fuel again are refused here. */
  #noteFuelSpent(error: ReedError): void {
    const d = error.details;
    if (d?.quota !== 'fuel_per_second' || typeof d.retryAfterMs !== 'number' || typeof d.limit !== 'number')
      return;
    this.#fuelSpentUntil = performance.now() + d.retryAfterMs;
    this.#fuelLimit = d.limit;
  }

  /** Starts a call on the host now; the first of a turn starts the tenant's slice of it (see TURN_SLICE_MS). */
  #start(
    pluginId: string,
    fn: string,
    bytes: Uint8Array,
    options: CallOptions | undefined,
  ): Promise<CallOutcome> {
    if (this.#turnStart === 0) this.#turnStart = performance.now();
    if (!this.#turnOpen) {
      this.#turnOpen = true;
      setImmediate(this.#nextTurn);
    }
    const began = performance.now();
    let outcome: Promise<CallOutcome>;
    try {
      outcome = this.host.call(pluginId, fn, bytes, options);
    } catch (error) {
      outcome = Promise.reject(error);
    }
    this.#noteTook(pluginId, fn, performance.now() - began, outcome);
    return outcome;
  }

  /** Whether a call of `fn` may start in this turn: the turn's first, or expected to end within the slice. */
  #fits(pluginId: string, fn: string): boolean {
    if (this.#turnStart === 0) return true;
    const took = this.#took.get(pluginId)?.get(fn) ?? 0;
    return performance.now() - this.#turnStart + took < TURN_SLICE_MS;
  }

  /**
   * Remembers what a call of `fn` took (see CALL_ESTIMATES). Callers name the functions, so a name is kept only if
   * its call took long enough to matter to the slice (a name the plugin does not export is refused in microseconds:
   * it fits any slice as an unknown one does) and is forgotten if the call never ran the plugin: made-up names cannot
   * fill the memory and make it start over, forgetting the slow functions (test/security/tenant-call-estimates).
   */
  #noteTook(pluginId: string, fn: string, took: number, outcome: Promise<CallOutcome>): void {
    let fns = this.#took.get(pluginId);
    const before = fns?.get(fn);
    if (fns !== undefined && before !== undefined) {
      fns.set(fn, took >= before ? took : before - (before - took) / 4);
      return;
    }
    if (took < TURN_SLICE_MS / 8) return;
    outcome.then(undefined, (error: unknown) => {
      if (error instanceof ReedError && NOT_RUN.has(error.code) && this.#took.get(pluginId)?.delete(fn))
        this.#tookCount--;
    });
    if (this.#tookCount >= CALL_ESTIMATES) {
      this.#took.clear();
      this.#tookCount = 0;
      fns = undefined;
    }
    if (fns === undefined) {
      fns = new Map();
      this.#took.set(pluginId, fns);
    }
    this.#tookCount++;
    fns.set(fn, took);
  }

  /** A new turn of the event loop: the slice is the tenant's again, and the calls waiting for it start. */
  readonly #nextTurn = () => {
    this.#turnOpen = false;
    this.#turnStart = 0;
    const queue = this.#queue;
    while (this.#queueHead < queue.length) {
      const q = queue[this.#queueHead] as Queued;
      if (!this.#fits(q.pluginId, q.fn)) break;
      queue[this.#queueHead++] = undefined as unknown as Queued;
      this.deferredCalls++;
      q.resolve(this.#start(q.pluginId, q.fn, q.bytes, q.options));
    }
    if (this.#queueHead === queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (!this.#turnOpen) {
      this.#turnOpen = true;
      setImmediate(this.#nextTurn);
    }
  };

  #has(pluginId: string): boolean {
    try {
      this.host.pluginStatus(pluginId);
      return true;
    } catch {
      return false;
    }
  }

  /** Calls in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async install(pluginId: string, archive: Readable): Promise<PluginStatus> {
    try {
      this.#admitLifecycle('installing', pluginId);
    } catch (error) {
      archive.resume();
      throw error;
    }
    const max = this.quotas.max_plugins;
    if (max === undefined) return this.host.install(pluginId, archive);
    // Installs under way count too: two at once must not both pass the check.
    const ids = new Set([...this.host.status().map((s) => s.id), ...this.#installing]);
    if (!ids.has(pluginId) && ids.size >= max) {
      archive.resume();
      throw this.#deny(
        'max_plugins',
        max,
        `installing "${pluginId}" would make ${ids.size + 1} plugins`,
        null,
        pluginId,
      );
    }
    const mine = !this.#installing.has(pluginId);
    this.#installing.add(pluginId);
    try {
      return await this.host.install(pluginId, archive);
    } finally {
      if (mine) this.#installing.delete(pluginId);
    }
  }

  remove(pluginId: string, options?: RemoveOptions): Promise<string[]> {
    try {
      this.#admitLifecycle('removing', pluginId);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.host.remove(pluginId, options);
  }

  reload(pluginId: string): Promise<PluginStatus> {
    try {
      this.#admitLifecycle('reloading', pluginId);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.host.reload(pluginId);
  }

  status(): PluginStatus[] {
    return this.host.status();
  }

  usage(): TenantUsage {
    const plugins: Record<string, ReturnType<typeof emptyUsage>> = {};
    const ids = new Set([...this.accounting.plugins.keys(), ...this.host.status().map((s) => s.id)]);
    const total = emptyUsage();
    addUsage(total, this.accounting.unattributed);
    for (const id of [...ids].sort()) {
      const u = { ...this.accounting.of(id) };
      u.calls = { ...u.calls };
      const space = this.storage.space(id);
      u.storageBytes = space.bytes;
      u.storageKeys = space.keys;
      plugins[id] = u;
      addUsage(total, u);
    }
    const denied = { ...this.accounting.denied };
    if (this.events.denied > 0) denied.events_per_second = this.events.denied;
    return {
      tenant: this.id,
      since: this.accounting.since,
      plugins,
      total,
      inFlight: this.#inFlight,
      denied,
      quotas: { ...this.quotas },
      ...(this.volume === undefined ? {} : { filesystem: this.#filesystemUsage(this.volume) }),
    };
  }

  /** statfs of the tenant's file system (quotas.filesystem_bytes). */
  #filesystemUsage(volume: TenantVolume): NonNullable<TenantUsage['filesystem']> {
    try {
      const space = volume.space();
      return {
        usedBytes: space.usedBytes,
        availableBytes: space.availableBytes,
        limitBytes: volume.limitBytes,
      };
    } catch {
      return { usedBytes: 0, availableBytes: 0, limitBytes: volume.limitBytes };
    }
  }
}
