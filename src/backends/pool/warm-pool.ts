import type { Logger } from 'pino';
import type { ResolvedLimits } from '../../manifest/limits.js';
import type { PluginSpec } from '../../protocol/messages.js';

/** The plugin id a warm runner or container has until its hand-out (its labels keep it for good). */
export const WARM_RUNNER_ID = 'reed-warm-runner';

/** What a warm runner is started with: no plugin yet, the pool's limits (the plugin's arrive at hand-out). */
export function warmSpec(limits: ResolvedLimits): PluginSpec {
  return {
    id: WARM_RUNNER_ID,
    type: 'wasm',
    apiVersion: '',
    limits,
    wasi: { args: [], env: {} },
    hostCalls: false,
    configuration: {},
  };
}

/**
 * What a pool holds: a runner started, hardened and connected to the host (its handshake done), that has not been
 * sent a plugin. The backend that made it hands it to exactly one plugin (applying that plugin's limits and
 * sending it the plugin); a runner is never given back to the pool, nor to a second plugin.
 */
export interface WarmRunner {
  /** Starts it up to the point where it would be sent a plugin. */
  launch(): Promise<void>;
  /** Resolves when it has exited. */
  readonly exited: Promise<unknown>;
  /** Whether it still runs (one that exited is never handed out, even before `exited` has been seen). */
  readonly alive: boolean;
  /** Kills it and removes everything it owns. Idempotent. */
  destroy(): Promise<void>;
}

export interface WarmPoolOptions<R extends WarmRunner> {
  /** How many runners are kept ready. */
  size: number;
  /** How long a runner waits in the pool before it is replaced by a fresh one. */
  ttlMs: number;
  /** A new runner (not launched). */
  make: () => R;
  logger: Logger;
  /** What the pool holds, for logs: "process", "container runc". */
  kind: string;
  /** The host session the pool belongs to (`poolsOf`). */
  session: string;
}

/** After a launch that failed, the next waits this long, doubling up to MAX_RETRY_MS; a launch that works resets it. */
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;
/** A runner taken is replaced when its hand-out is done, or after this long at the latest. */
const REFILL_LATEST_MS = 2_000;
/**
 * How long after a hand-out the replacement is launched (`handedOut`): a launch's spawn, cgroup and uid lease (a
 * scan of every process's status in /proc: ~7 ms of the host's CPU) would otherwise run on the host's event loop
 * while the load that took the runner is still returning.
 */
export const REFILL_AFTER_HAND_OUT_MS = 50;

interface Idle<R> {
  runner: R;
  timer: NodeJS.Timeout;
}

/** The pools of each host session, for tests and benchmarks that wait for a pool to fill (`filled`). */
const POOLS = new Map<string, Set<WarmPool<WarmRunner>>>();

/** The pools of one host (its session id), of every backend. */
export function poolsOf(session: string): WarmPool<WarmRunner>[] {
  return [...(POOLS.get(session) ?? [])];
}

/**
 * Warm runners kept ahead of demand (issue 16): `size` of them launched one at a time in the background, each
 * replaced when taken, when it dies before it is taken, and when it has waited `ttlMs`. Neutral: a backend gives
 * it the way to make a runner and takes runners out; what a runner is, and what handing it out means, is the
 * backend's. Nothing is launched before `start`; `close` destroys every runner the pool still holds or launches.
 */
export class WarmPool<R extends WarmRunner> {
  readonly #o: WarmPoolOptions<R>;
  readonly #idle: Idle<R>[] = [];
  #launching: R | undefined;
  #started = false;
  #closed = false;
  #retryMs = FIRST_RETRY_MS;
  #retry: NodeJS.Timeout | undefined;
  #waiters: (() => void)[] = [];
  /** Counts, for tests and the benchmark. */
  readonly stats = { launched: 0, failed: 0, handedOut: 0, died: 0, expired: 0 };

  constructor(options: WarmPoolOptions<R>) {
    this.#o = options;
    const set = POOLS.get(options.session) ?? new Set();
    POOLS.set(options.session, set);
    set.add(this as unknown as WarmPool<WarmRunner>);
  }

  get kind(): string {
    return this.#o.kind;
  }

  get size(): number {
    return this.#o.size;
  }

  /** Runners ready to be taken. */
  get ready(): number {
    return this.#idle.length;
  }

  /** The runners ready to be taken, oldest first (tests and the benchmark look at them; take them with `take`). */
  idleRunners(): R[] {
    return this.#idle.map((i) => i.runner);
  }

  /** Begins filling (idempotent). */
  start(): void {
    if (this.#started || this.#closed || this.#o.size <= 0) return;
    this.#started = true;
    this.#refill();
  }

  /** A ready runner, or undefined when none is (the caller then starts one fresh); a replacement is launched. */
  take(): R | undefined {
    let idle = this.#idle.shift();
    while (idle !== undefined && !idle.runner.alive) {
      clearTimeout(idle.timer);
      this.stats.died++;
      void idle.runner.destroy();
      idle = this.#idle.shift();
    }
    if (idle === undefined) {
      this.start();
      this.#refill();
      return undefined;
    }
    clearTimeout(idle.timer);
    this.stats.handedOut++;
    this.start();
    // The replacement is launched once the hand-out is done (`handedOut`, from the backend): launching one costs the
    // host a spawn and a uid lease's scan of /proc, which would otherwise share the CPU with the hand-out it
    // replaces. At the latest after REFILL_LATEST_MS.
    const latest = setTimeout(() => this.refill(), REFILL_LATEST_MS);
    latest.unref();
    return idle.runner;
  }

  /** Launches runners until `size` are ready again (idempotent). */
  refill(): void {
    this.#refill();
  }

  /** A runner taken has been handed out (ready or not): its replacement is launched REFILL_AFTER_HAND_OUT_MS later. */
  handedOut(): void {
    setTimeout(() => this.#refill(), REFILL_AFTER_HAND_OUT_MS).unref();
  }

  /** Resolves once `size` runners are ready (or the pool is closed). */
  filled(): Promise<void> {
    if (this.#closed || this.#idle.length >= this.#o.size) return Promise.resolve();
    this.start();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Destroys every runner it holds, and the one being launched; launches nothing more. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    POOLS.get(this.#o.session)?.delete(this as unknown as WarmPool<WarmRunner>);
    if (POOLS.get(this.#o.session)?.size === 0) POOLS.delete(this.#o.session);
    clearTimeout(this.#retry);
    this.#wake();
    const idle = this.#idle.splice(0);
    for (const { timer } of idle) clearTimeout(timer);
    const launching = this.#launching;
    await Promise.all([...idle.map(({ runner }) => runner.destroy()), launching?.destroy()]);
  }

  /** Launches runners one after another until `size` are ready (one at a time: the host keeps its CPU for calls). */
  #refill(): void {
    if (this.#closed || this.#launching !== undefined || this.#retry !== undefined) return;
    if (this.#idle.length >= this.#o.size) return;
    const runner = this.#o.make();
    this.#launching = runner;
    runner.launch().then(
      () => {
        this.#launching = undefined;
        if (this.#closed) {
          void runner.destroy();
          return;
        }
        this.stats.launched++;
        this.#retryMs = FIRST_RETRY_MS;
        this.#add(runner);
        this.#refill();
      },
      (error: unknown) => {
        this.#launching = undefined;
        void runner.destroy();
        if (this.#closed) return;
        this.stats.failed++;
        this.#o.logger.warn(
          { pool: this.#o.kind, retryInMs: this.#retryMs, err: error },
          `a warm runner for the ${this.#o.kind} pool did not start: ${(error as Error).message}`,
        );
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#refill();
        }, this.#retryMs);
        this.#retry.unref();
        this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
      },
    );
  }

  #add(runner: R): void {
    const timer = setTimeout(() => {
      if (this.#remove(runner)) {
        this.stats.expired++;
        void runner.destroy();
        this.#refill();
      }
    }, this.#o.ttlMs);
    timer.unref();
    this.#idle.push({ runner, timer });
    // One that dies while it waits (killed, out of memory) is removed and replaced.
    void runner.exited.then(() => {
      if (this.#remove(runner)) {
        this.stats.died++;
        this.#o.logger.warn(
          { pool: this.#o.kind },
          `a warm runner of the ${this.#o.kind} pool exited; replacing it`,
        );
        void runner.destroy();
        this.#refill();
      }
    });
    if (this.#idle.length >= this.#o.size) this.#wake();
  }

  #remove(runner: R): boolean {
    const at = this.#idle.findIndex((i) => i.runner === runner);
    if (at < 0) return false;
    const [idle] = this.#idle.splice(at, 1);
    if (idle !== undefined) clearTimeout(idle.timer);
    return true;
  }

  #wake(): void {
    const waiters = this.#waiters.splice(0);
    for (const wake of waiters) wake();
  }
}

/** `ttl = "10m"`, `"30s"`, `"1h"`, `"500ms"`, or a number of milliseconds: reed.toml's `[sandbox.pool] ttl`. */
export function parseTtl(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const m = /^(\d{1,9})(ms|s|m|h)$/.exec(value.trim());
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return n > 0 ? n * unit : undefined;
}
