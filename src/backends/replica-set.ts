import { ReedError } from '../errors.js';
import type { SandboxMode } from '../manifest/types.js';
import type {
  CallOptions,
  CallOutcome,
  Sandbox,
  SandboxHealth,
  SandboxStatus,
  SandboxUsage,
} from './sandbox.js';

/** The most replicas a plugin may ask for (`[sandbox] replicas`, src/manifest/schema.ts). */
export const MAX_REPLICAS = 16;

export interface ReplicaSetOptions {
  pluginId: string;
  /** The mode the set reports (the backend that made its replicas). */
  mode: SandboxMode;
  /** How many replicas: 2..MAX_REPLICAS (one needs no set: the backend returns the sandbox itself). */
  replicas: number;
  /**
   * Makes replica `index` (0-based), once, when the set is made: each a sandbox of its own (a SupervisedSandbox in
   * process, container and swarm modes) with its own runner, supervision, restarts and breaker.
   */
  createReplica: (index: number) => Sandbox;
}

/** A replica's rank for the next call: the lower, the better (see ReplicaSet.call). */
const RANK: Record<SandboxStatus['state'], number> = {
  ready: 0,
  idle: 0,
  starting: 1,
  restarting: 1,
  failed: 2,
  stopped: 3,
};

/**
 * N sandboxes of one plugin (`[sandbox] replicas`), each with its own runner and supervisor, behind one Sandbox.
 * A call goes to the replica with the fewest calls in flight among the ready ones (ties: round robin); an idle
 * replica (its own `idle_timeout`) counts as ready and is woken by the call it gets, so a set that idled wakes one
 * replica per call that finds the others busy. Only when none is ready or idle does a call go to one that is
 * (re)starting (it waits for it, as on a single sandbox), and only when all are failed does it get the breaker's
 * `plugin_failed`. A replica whose runner is lost fails only the calls in flight on it (`sandbox_crashed`, from its
 * supervisor) and is restarted by its supervisor; the others keep answering. Status, health and usage aggregate:
 * ready while at least one replica is (`replicas.ready` says how many).
 */
export class ReplicaSet implements Sandbox {
  readonly mode: SandboxMode;
  readonly pluginId: string;
  readonly #replicas: readonly Sandbox[];
  /** Calls in flight on each replica, counted here (the replicas' own counts are private). */
  readonly #inFlight: number[];
  /** Where the round robin among equals starts next. */
  #next = 0;
  #closing: Promise<void> | undefined;

  constructor(options: ReplicaSetOptions) {
    if (!Number.isInteger(options.replicas) || options.replicas < 1 || options.replicas > MAX_REPLICAS)
      throw new RangeError(`replicas must be an integer in 1..${MAX_REPLICAS}, not ${options.replicas}`);
    this.mode = options.mode;
    this.pluginId = options.pluginId;
    this.#replicas = Array.from({ length: options.replicas }, (_, i) => options.createReplica(i));
    this.#inFlight = this.#replicas.map(() => 0);
  }

  /** The replicas, in index order (tests read their runners' pids). */
  get replicas(): readonly Sandbox[] {
    return this.#replicas;
  }

  /** Calls in flight on replica `index` (sent, or waiting for its start). */
  inFlight(index: number): number {
    return this.#inFlight[index] ?? 0;
  }

  /**
   * Starts every replica at once (each runs the plugin's `init` in its own runner). The plugin is loaded only when
   * all start: if one fails, the others are stopped and its error is the start's.
   */
  async start(): Promise<void> {
    const results = await Promise.allSettled(this.#replicas.map((r) => r.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed === undefined) return;
    await this.close();
    throw failed.reason;
  }

  call(fn: string, input: Uint8Array, options?: CallOptions, startedAt?: number): Promise<CallOutcome> {
    if (this.#closing !== undefined)
      return Promise.reject(
        new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" was stopped`, {
          pluginId: this.pluginId,
        }),
      );
    const index = this.#pick();
    const replica = this.#replicas[index] as Sandbox;
    this.#inFlight[index] = (this.#inFlight[index] ?? 0) + 1;
    const done = () => {
      this.#inFlight[index] = (this.#inFlight[index] ?? 1) - 1;
    };
    let call: Promise<CallOutcome>;
    try {
      call = replica.call(fn, input, options, startedAt);
    } catch (error) {
      done();
      return Promise.reject(error);
    }
    return call.finally(done);
  }

  /**
   * The best replica for the next call: the lowest rank (ready or idle, then (re)starting, then failed), then the
   * fewest calls in flight, then a ready one before an idle one (no wake while a ready replica is as free), then the
   * first from the round robin's place (which moves on past the one chosen).
   */
  #pick(): number {
    const n = this.#replicas.length;
    let best = 0;
    let bestScore = Number.POSITIVE_INFINITY;
    for (let k = 0; k < n; k++) {
      const i = (this.#next + k) % n;
      const state = (this.#replicas[i] as Sandbox).status().state;
      // Rank first, then load (far below 2^38 calls), then idle after ready.
      const score = RANK[state] * 2 ** 40 + (this.#inFlight[i] ?? 0) * 2 + (state === 'idle' ? 1 : 0);
      if (score < bestScore) {
        best = i;
        bestScore = score;
      }
    }
    this.#next = (best + 1) % n;
    return best;
  }

  /**
   * The set's state is the best of its replicas' (ready, starting, restarting, idle, failed, stopped, in that
   * order): it takes calls while one replica does. Crashes are summed; the breaker is open only when every replica
   * is failed (retryAt: the first of their trials); lastError is a replica's, one that is not ready first.
   */
  status(): SandboxStatus {
    const all = this.#replicas.map((r) => r.status());
    const order: SandboxStatus['state'][] = ['ready', 'starting', 'restarting', 'idle', 'failed', 'stopped'];
    const state = order.find((s) => all.some((r) => r.state === s)) ?? 'stopped';
    const ready = all.filter((r) => r.state === 'ready').length;
    const crashes = all.reduce((sum, r) => sum + r.crashes, 0);
    const troubled = all.find((r) => r.state !== 'ready' && r.lastError !== undefined);
    const lastError = (troubled ?? all.find((r) => r.lastError !== undefined))?.lastError;
    const retries = all.flatMap((r) => (r.retryAt === undefined ? [] : [r.retryAt])).sort();
    const breaker =
      state === 'failed' ? 'open' : all.some((r) => r.breaker === 'half-open') ? 'half-open' : 'closed';
    return {
      state,
      crashes,
      breaker,
      replicas: { total: all.length, ready },
      ...(lastError === undefined ? {} : { lastError }),
      ...(state === 'failed' && retries[0] !== undefined ? { retryAt: retries[0] } : {}),
    };
  }

  /** Healthy while one replica is; the detail says how many answered. */
  async health(): Promise<SandboxHealth> {
    const all = await Promise.all(
      this.#replicas.map((r) => r.health().catch(() => ({ ok: false }) as SandboxHealth)),
    );
    const ok = all.filter((h) => h.ok).length;
    return {
      ok: ok > 0,
      ...(ok === all.length ? {} : { detail: `${ok} of ${all.length} replicas healthy` }),
    };
  }

  /** The replicas' usage summed (each figure only when some replica reports it). */
  usage(): SandboxUsage | undefined {
    let memoryBytes: number | undefined;
    let cpuSeconds: number | undefined;
    for (const replica of this.#replicas) {
      const u = replica.usage?.();
      if (u?.memoryBytes !== undefined) memoryBytes = (memoryBytes ?? 0) + u.memoryBytes;
      if (u?.cpuSeconds !== undefined) cpuSeconds = (cpuSeconds ?? 0) + u.cpuSeconds;
    }
    if (memoryBytes === undefined && cpuSeconds === undefined) return undefined;
    return {
      ...(memoryBytes === undefined ? {} : { memoryBytes }),
      ...(cpuSeconds === undefined ? {} : { cpuSeconds }),
    };
  }

  /** Stops every replica at once (each runs deactivate in its runner, then stops it). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.allSettled(this.#replicas.map((r) => r.close())).then((results) => {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    });
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The sandbox a backend returns for a plan: `make()` itself for one replica (exactly as without replicas), else a
 * ReplicaSet of `replicas` sandboxes each made by `make`.
 */
export function replicated(
  plan: { readonly pluginId: string; readonly mode: SandboxMode; readonly replicas?: number },
  make: () => Sandbox,
): Sandbox {
  const replicas = plan.replicas ?? 1;
  if (replicas <= 1) return make();
  return new ReplicaSet({ pluginId: plan.pluginId, mode: plan.mode, replicas, createReplica: () => make() });
}
