import { ReedError } from '../errors.js';
import type { CallWasi } from './call-wasi.js';

/** One call's result from any runtime. */
export interface CallResult {
  output: Uint8Array;
  /** WASM: instructions charged (the seed's fuel_consumed); 0 where fuel does not apply. */
  fuelConsumed: number;
  /**
   * When the guest returned, on performance.now()'s clock, where the runtime read it for the deadline (a call with
   * one): the caller's duration ends there rather than read the clock again.
   */
  endedAt?: number;
}

/**
 * Runs one plugin. Knows nothing about sockets or Docker: the same object runs inside the host (mode `none`)
 * and inside the sandbox-runner (process and container modes). Calls are synchronous and never overlap.
 */
export interface PluginRuntime {
  /** Names of the functions `call` accepts. */
  readonly functions: readonly string[];
  /** Bytes of its WASM linear memory now (0 between instances); absent where the runtime cannot tell (native). */
  memoryBytes?(): number;
  /** WASM: the fuel the last run used, returned or failed (a tenant's fuel_per_second charges it). */
  readonly fuelOfLastRun?: number;
  /**
   * Runs the plugin's `init`, if any. Throws `init_failed` (or a limit's code) when it fails. `deadline` (the
   * call deadlines' clock; absent: none): WASM checks it as a call's (`call_timeout`); a native init cannot be
   * interrupted.
   */
  init(deadline?: number): void;
  /**
   * Throws ReedError with a stable code for every failure; the runtime stays usable afterwards. `wasi`: this call's
   * WASI arguments and environment, checked (checkCallWasi); only a WASI command takes them
   * (`wasi_args_not_command` otherwise).
   */
  call(fn: string, input: Uint8Array, deadline?: number, wasi?: CallWasi): CallResult;
  /** Runs the plugin's `deactivate`, if any, and releases the instance. Idempotent. */
  deactivate(): void;
}

/** The checks every runtime makes before a call: still running, and the function is one it has. */
export function checkCallable(
  pluginId: string,
  stopped: boolean,
  functions: readonly string[],
  fn: string,
): void {
  if (stopped) throw new ReedError('plugin_not_loaded', `plugin "${pluginId}" was deactivated`, { pluginId });
  if (!functions.includes(fn)) {
    throw new ReedError(
      'function_not_found',
      `plugin "${pluginId}" has no callable function "${fn}"; it has: ${functions.join(', ') || '(none)'}`,
      {
        pluginId,
      },
    );
  }
}
