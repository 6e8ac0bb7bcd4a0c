import type { SandboxMode } from '../manifest/types.js';
import type { CallWasi } from '../runtime/call-wasi.js';
import type { SandboxUsage } from './shared/cgroup-usage.js';

export type { SandboxUsage } from './shared/cgroup-usage.js';

export interface CallOptions {
  /** Default: the plugin's limits.call_timeout_ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * WASI arguments and environment for this call of a WASI command: `args` after the manifest's `[wasi] args`, `env`
   * merged over its `[wasi] env` (src/runtime/call-wasi.ts: at most 256 args, 256 variables, 64 KiB in all). Any
   * other plugin refuses them (`wasi_args_not_command`). Default: none.
   */
  wasi?: CallWasi;
  /**
   * The caller's W3C traceparent (src/trace-context.ts): the call's span is its child. Given to a sandbox, the
   * traceparent of the host's call span, which the Call frame carries to the runner. Default: the active context.
   */
  traceParent?: string;
}

export interface CallStats {
  /** WASM instructions charged (the seed's fuel_consumed); 0 where fuel does not apply. */
  fuelConsumed: number;
  durationMs: number;
  /**
   * When the sandbox had the outcome, on now()'s clock, where it read the clock for its own figures (mode none):
   * the host's call event ends there rather than read the clock again. Absent where the sandbox's clock is not
   * the host's own.
   */
  endedAt?: number;
}

export interface CallOutcome {
  output: Uint8Array;
  stats: CallStats;
  /** When the runner ran the call (epoch milliseconds, its own clock): reported for a traced call only. */
  runner?: { startedAt: number; endedAt: number };
}

export interface SandboxHealth {
  ok: boolean;
  detail?: string;
}

/** What holds for a sandbox now (the plugin's status reads it: it never reports a state that is not so). */
export interface SandboxStatus {
  /**
   * `restarting`: a runner was lost and another is starting (or waits out its backoff, or a breaker's trial).
   * `idle`: scaled to zero after `idle_timeout` without a call (no runner, container or instance); the next call
   * wakes it (`starting` until ready).
   */
  state: 'starting' | 'ready' | 'restarting' | 'idle' | 'failed' | 'stopped';
  /** Crashes within the breaker's window (0 where nothing can crash apart from the host: mode none). */
  crashes: number;
  /** The breaker (supervised sandboxes): `open` while failed, `half-open` during its one trial start. */
  breaker?: 'closed' | 'open' | 'half-open';
  /** When an open breaker half-opens (ISO 8601). */
  retryAt?: string;
  /** The last crash or failed restart. */
  lastError?: { code: string; message: string };
  /** A plugin with `[sandbox] replicas` above 1 (src/backends/replica-set.ts): how many there are, how many ready. */
  replicas?: { total: number; ready: number };
}

/**
 * Where one plugin's runtime lives and how calls reach it. One interface for every mode; each backend (a folder
 * beside this file, listed in registry.ts) makes these: `none` (in-process/), `process` and `container` (both
 * through the supervisor, supervisor.ts). Calls to one sandbox are
 * serialised by the host; errors are ReedErrors with stable codes.
 */
export interface Sandbox {
  readonly mode: SandboxMode;
  readonly pluginId: string;
  /** Prepares and starts the plugin's runtime and runs its `init`. */
  start(): Promise<void>;
  /**
   * `startedAt`: when the caller began the call, on now()'s clock (src/backends/shared/call-deadlines.ts); a sandbox
   * that reads the clock for the call's deadline (mode none) counts from it instead. The host reads the clock once
   * a call and gives it. Default: the sandbox reads the clock.
   */
  call(fn: string, input: Uint8Array, options?: CallOptions, startedAt?: number): Promise<CallOutcome>;
  /**
   * The call's outcome at once when the sandbox has it without waiting (mode none, not idle), undefined when it
   * would have to wait (then `call`); throws what `call` would reject with. No promise and no reaction a call.
   */
  callNow?(fn: string, input: Uint8Array, options?: CallOptions, startedAt?: number): CallOutcome | undefined;
  health(): Promise<SandboxHealth>;
  status(): SandboxStatus;
  /** Memory and CPU it uses now (cgroup accounting in process and container modes, WASM memory in mode none). */
  usage?(): SandboxUsage | undefined;
  /** Runs `deactivate`, then releases everything. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
