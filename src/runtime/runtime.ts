/** One call's result from any runtime. */
export interface CallResult {
  output: Uint8Array;
  /** WASM: instructions charged (the seed's fuel_consumed); 0 where fuel does not apply. */
  fuelConsumed: number;
}

/**
 * Runs one plugin. Knows nothing about sockets or Docker: the same object runs inside the host (mode `none`)
 * and inside the sandbox-runner (process and container modes). Calls are synchronous and never overlap.
 */
export interface PluginRuntime {
  /** Names of the functions `call` accepts. */
  readonly functions: readonly string[];
  /** Runs the plugin's `init`, if any. Throws `init_failed` (or a limit's code) when it fails. */
  init(): void;
  /** Throws ReedError with a stable code for every failure; the runtime stays usable afterwards. */
  call(fn: string, input: Uint8Array, deadline?: number): CallResult;
  /** Runs the plugin's `deactivate`, if any, and releases the instance. Idempotent. */
  deactivate(): void;
}
