import { ReedError } from '../../errors.js';
import { publish } from '../../events/events.js';
import { checkCallWasi } from '../../runtime/call-wasi.js';
import type { PluginRuntime } from '../../runtime/runtime.js';
import type {
  CallOptions,
  CallOutcome,
  Sandbox,
  SandboxHealth,
  SandboxStatus,
  SandboxUsage,
} from '../sandbox.js';
import { now } from '../shared/call-deadlines.js';
import { IdleClock } from '../shared/idle-clock.js';
import { eventSource, type HostSession } from '../shared/session.js';
import type { FuelBudget } from './tenant-budget.js';

/** Scale to zero in mode none: the plugin's `idle_timeout`, and the host's session its events name. */
export interface InProcessIdle {
  timeoutMs: number;
  session: Pick<HostSession, 'id' | 'tenant'>;
}

/**
 * Mode `none`: the runtime runs in the host process, on the calling thread. Isolation is WASM's own (bounds,
 * fuel, memory caps); a call cannot be preempted, so the deadline is checked at every host import and on
 * return, and fuel is what bounds a call that never calls the host.
 */
export class InProcessSandbox implements Sandbox {
  readonly mode = 'none' as const;
  #runtime: PluginRuntime | undefined;
  #closed = false;
  /** Scale to zero (idle_timeout): the instance and its memory dropped after the timeout, made again on a call. */
  readonly #idle: IdleClock | undefined;
  #isIdle = false;
  /** The wake under way: calls that arrive meanwhile wait for the same one. */
  #waking: Promise<void> | undefined;
  /** Calls waiting for a wake (a call itself runs on the host's thread and is never in flight when the clock looks). */
  #waiting = 0;

  constructor(
    readonly pluginId: string,
    private readonly createRuntime: () => Promise<PluginRuntime>,
    private readonly defaultTimeoutMs: number,
    /** The tenant's fuel per second, shared by its sandboxes: checked before each call, charged after. */
    private readonly fuelBudget?: FuelBudget,
    private readonly idle?: InProcessIdle,
  ) {
    this.#idle =
      idle !== undefined && idle.timeoutMs > 0
        ? new IdleClock(
            idle.timeoutMs,
            () => this.#waiting > 0,
            () => this.#goIdle(),
          )
        : undefined;
  }

  async start(): Promise<void> {
    const runtime = await this.createRuntime();
    // On the host's thread: within the plugin's call_timeout_ms, as a call (WasmPlugin.init).
    runtime.init(now() + this.defaultTimeoutMs);
    this.#runtime = runtime;
    this.#idle?.arm();
  }

  /** No call for idle_timeout: `deactivate` runs as on a normal stop and the instance is let go (its memory with it). */
  #goIdle(): void {
    const runtime = this.#runtime;
    if (runtime === undefined || this.#closed || this.#waiting > 0 || this.idle === undefined) return;
    this.#runtime = undefined;
    this.#isIdle = true;
    try {
      runtime.deactivate();
    } catch {
      // As at close: the plugin's deactivate failing does not keep its instance.
    }
    const { timeoutMs } = this.idle;
    publish('reed:sandbox:idled', {
      ...eventSource(this.idle.session),
      pluginId: this.pluginId,
      mode: 'none',
      pid: undefined,
      idleTimeoutMs: timeoutMs,
      reason: `no call for ${timeoutMs} ms (idle_timeout)`,
    });
  }

  /**
   * Makes the instance again (as `start`: the runtime, then `init`) for the call that found it idle; the calls
   * meanwhile wait for the same wake. A failed wake answers them with its code and leaves it idle: the next call
   * tries again (mode none has no breaker: nothing here crashes but the host).
   */
  #wake(fn: string): Promise<void> {
    this.#waking ??= (async () => {
      const since = now();
      const runtime = await this.createRuntime();
      if (this.#closed) {
        runtime.deactivate();
        throw new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" was stopped`, {
          pluginId: this.pluginId,
        });
      }
      runtime.init(now() + this.defaultTimeoutMs);
      this.#runtime = runtime;
      this.#isIdle = false;
      this.#idle?.arm();
      if (this.idle !== undefined)
        publish('reed:sandbox:woke', {
          ...eventSource(this.idle.session),
          pluginId: this.pluginId,
          mode: 'none',
          pid: undefined,
          reason: `call ${JSON.stringify(fn.slice(0, 128))}`,
          wakeMs: now() - since,
        });
    })().finally(() => {
      this.#waking = undefined;
    });
    return this.#waking;
  }

  /** Waits for the wake, at most the call's deadline (`call_timeout`; the wake goes on for the calls after it). */
  async #awaitWake(fn: string, timeoutMs: number): Promise<void> {
    this.#waiting++;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#wake(fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ReedError(
                  'call_timeout',
                  `call ${fn} of plugin "${this.pluginId}" waited its deadline of ${timeoutMs} ms for the plugin to wake from idle (idle_timeout), and it was still starting`,
                  { pluginId: this.pluginId, details: { waking: true } },
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#waiting--;
    }
  }

  /** The synchronous call path, for callers already on the host's thread (and the benchmarks). */
  callSync(
    fn: string,
    input: Uint8Array,
    timeoutMs = this.defaultTimeoutMs,
    wasi?: CallOptions['wasi'],
    /** When the caller began the call (Sandbox.call's startedAt): the deadline counts from it. Default: now. */
    startedAt?: number,
  ): CallOutcome {
    const runtime = this.#runtime;
    if (runtime === undefined || this.#closed) {
      const why = this.#isIdle && !this.#closed ? ' (it is idle: call() wakes it)' : '';
      throw new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" is not running${why}`, {
        pluginId: this.pluginId,
      });
    }
    const budget = this.fuelBudget;
    budget?.admit(this.pluginId);
    const started = startedAt ?? now();
    let result: ReturnType<PluginRuntime['call']>;
    try {
      result = runtime.call(fn, input, started + timeoutMs, wasi);
    } catch (error) {
      budget?.charge(runtime.fuelOfLastRun ?? 0);
      throw error;
    }
    budget?.charge(result.fuelConsumed);
    this.#idle?.touch();
    // The runtime read the clock for the deadline when the guest returned: the duration ends there.
    const ended = result.endedAt ?? now();
    return {
      output: result.output,
      stats: { fuelConsumed: result.fuelConsumed, durationMs: ended - started, endedAt: ended },
    };
  }

  /**
   * Sandbox.callNow: the outcome at once unless the sandbox is idle (then `call`, which wakes it). Generation takes
   * this path for mode none: no promise reaction and no closures a call.
   */
  callNow(
    fn: string,
    input: Uint8Array,
    options: CallOptions = {},
    startedAt?: number,
  ): CallOutcome | undefined {
    if (this.#isIdle && !this.#closed) return undefined;
    const wasi = this.#checked(options);
    return this.callSync(fn, input, options.timeoutMs ?? this.defaultTimeoutMs, wasi, startedAt);
  }

  /** What `call` and `callNow` refuse before anything runs; the call's checked WASI context. */
  #checked(options: CallOptions): CallOptions['wasi'] {
    options.signal?.throwIfAborted();
    // Checked here too, as a runner checks its Call frame: a sandbox called directly refuses the same.
    return options.wasi === undefined ? undefined : checkCallWasi(this.pluginId, options.wasi);
  }

  async call(
    fn: string,
    input: Uint8Array,
    options: CallOptions = {},
    startedAt?: number,
  ): Promise<CallOutcome> {
    const now = this.callNow(fn, input, options, startedAt);
    if (now !== undefined) return now;
    const wasi = this.#checked(options);
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    // Idle: woken first (the calls meanwhile wait for the same wake). The loop: a wake can be followed by an idle
    // stop before this call's turn only if the clock fired in between, which #waiting prevents; it is a guard.
    while (this.#isIdle && !this.#closed) await this.#awaitWake(fn, timeoutMs);
    // Woken: the call's deadline counts from here, not from the call's start (the wake had its own).
    return this.callSync(fn, input, timeoutMs, wasi);
  }

  async health(): Promise<SandboxHealth> {
    if (this.#isIdle && !this.#closed) return { ok: true, detail: 'idle' };
    return this.#runtime !== undefined && !this.#closed ? { ok: true } : { ok: false, detail: 'not running' };
  }

  /** Nothing here restarts or crashes on its own (a trap recycles the instance; see WasmPlugin). */
  status(): SandboxStatus {
    return {
      state: this.#closed
        ? 'stopped'
        : this.#runtime !== undefined
          ? 'ready'
          : this.#isIdle && this.#waking === undefined
            ? 'idle'
            : 'starting',
      crashes: 0,
    };
  }

  /** Its WASM linear memory (the guest's): mode none's memory lives in the host's heap, not in a cgroup. */
  usage(): SandboxUsage | undefined {
    const memoryBytes = this.#closed ? undefined : this.#runtime?.memoryBytes?.();
    return memoryBytes === undefined ? undefined : { memoryBytes };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#idle?.stop();
    const runtime = this.#runtime;
    this.#runtime = undefined;
    runtime?.deactivate();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
