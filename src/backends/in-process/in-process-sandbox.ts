import { ReedError } from '../../errors.js';
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
import type { FuelBudget } from './tenant-budget.js';

/**
 * Mode `none`: the runtime runs in the host process, on the calling thread. Isolation is WASM's own (bounds,
 * fuel, memory caps); a call cannot be preempted, so the deadline is checked at every host import and on
 * return, and fuel is what bounds a call that never calls the host.
 */
export class InProcessSandbox implements Sandbox {
  readonly mode = 'none' as const;
  #runtime: PluginRuntime | undefined;
  #closed = false;

  constructor(
    readonly pluginId: string,
    private readonly createRuntime: () => Promise<PluginRuntime>,
    private readonly defaultTimeoutMs: number,
    /** The tenant's fuel per second, shared by its sandboxes: checked before each call, charged after. */
    private readonly fuelBudget?: FuelBudget,
  ) {}

  async start(): Promise<void> {
    const runtime = await this.createRuntime();
    runtime.init();
    this.#runtime = runtime;
  }

  /** The synchronous call path, for callers already on the host's thread (and the benchmarks). */
  callSync(
    fn: string,
    input: Uint8Array,
    timeoutMs = this.defaultTimeoutMs,
    wasi?: CallOptions['wasi'],
  ): CallOutcome {
    const runtime = this.#runtime;
    if (runtime === undefined || this.#closed) {
      throw new ReedError('plugin_not_loaded', `plugin "${this.pluginId}" is not running`, {
        pluginId: this.pluginId,
      });
    }
    const budget = this.fuelBudget;
    budget?.admit(this.pluginId);
    const started = performance.now();
    let result: ReturnType<PluginRuntime['call']>;
    try {
      result = runtime.call(fn, input, started + timeoutMs, wasi);
    } catch (error) {
      budget?.charge(runtime.fuelOfLastRun ?? 0);
      throw error;
    }
    budget?.charge(result.fuelConsumed);
    return {
      output: result.output,
      stats: { fuelConsumed: result.fuelConsumed, durationMs: performance.now() - started },
    };
  }

  async call(fn: string, input: Uint8Array, options: CallOptions = {}): Promise<CallOutcome> {
    options.signal?.throwIfAborted();
    // Checked here too, as a runner checks its Call frame: a sandbox called directly refuses the same.
    const wasi = options.wasi === undefined ? undefined : checkCallWasi(this.pluginId, options.wasi);
    return this.callSync(fn, input, options.timeoutMs ?? this.defaultTimeoutMs, wasi);
  }

  async health(): Promise<SandboxHealth> {
    return this.#runtime !== undefined && !this.#closed ? { ok: true } : { ok: false, detail: 'not running' };
  }

  /** Nothing here restarts or crashes on its own (a trap recycles the instance; see WasmPlugin). */
  status(): SandboxStatus {
    return {
      state: this.#closed ? 'stopped' : this.#runtime === undefined ? 'starting' : 'ready',
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
    this.#runtime?.deactivate();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
