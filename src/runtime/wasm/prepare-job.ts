import { ReedError } from '../../errors.js';
import { HOST_ROUND_TRIP_IMPORTS } from './abi.js';
import { type ModuleExport, prepareModule } from './prepare-module.js';

/** Everything the CPU-bound part of preparing a module needs: plain data, so it can cross to a worker. */
export interface PrepareJob {
  pluginId: string;
  file: string;
  fuel: boolean;
  initialFuel: bigint;
  memoryCapPages: number;
  tableCapElements: number;
}

/** What the host keeps about a prepared module besides its bytes (also stored in the compile cache). */
export interface PreparedInfo {
  exports: ModuleExport[];
  isCommand: boolean;
  hostCalls?: boolean;
}

export interface PrepareResult {
  bytes: Uint8Array;
  info: PreparedInfo;
}

/**
 * Validates (V8) and instruments `source`, which check-module.ts has already checked (size, shape, imports, memory,
 * tables, exports: what validate checks too). Synchronous and self-contained: it runs in a worker for large modules
 * (compile-wasm.ts).
 */
export function runPrepareJob(source: Uint8Array, job: PrepareJob): PrepareResult {
  const at = { pluginId: job.pluginId, file: job.file };
  checkV8Valid(source, at);
  let prepared: ReturnType<typeof prepareModule>;
  try {
    prepared = prepareModule(source, {
      fuel: job.fuel,
      initialFuel: job.initialFuel,
      memoryCapPages: job.memoryCapPages,
      tableCapElements: job.tableCapElements,
    });
  } catch (error) {
    if (error instanceof ReedError && error.file === undefined) {
      throw new ReedError(error.code, `${job.file}: ${error.message}`, { ...at, cause: error });
    }
    throw error;
  }
  if (job.fuel && BigInt(prepared.instantiationFuel) > job.initialFuel)
    throw new ReedError(
      'wasm_limit_exceeded',
      `${job.file}: making an instance of this module costs ${prepared.instantiationFuel} fuel (its initial memory, tables, data and element segments, exports, imports, globals, tags and functions: docs/ABI-wasm.md, "How fuel works"), more than limits.fuel_per_call = ${job.initialFuel}; a command makes one at every call and a plugin at its first call after a trap, so none of those calls could run: raise fuel_per_call, or make the module declare less`,
      at,
    );
  return {
    bytes: prepared.bytes,
    info: {
      exports: prepared.exports,
      isCommand: prepared.isCommand,
      hostCalls: prepared.imports.some((i) => i.module === 'reed' && HOST_ROUND_TRIP_IMPORTS.has(i.name)),
    },
  };
}

/**
 * V8's validation of the whole module (WebAssembly.validate: decodes and type-checks, compiles nothing): function
 * bodies, constant expressions, data and element segments. Load runs it before instrumenting, and `reed-plugins
 * validate` runs it after checkModule too (compile-wasm.ts checkWasmFile), so both refuse such a module with
 * wasm_invalid. Only when it fails is the module compiled, for V8's reason.
 */
export function checkV8Valid(source: Uint8Array, at: { pluginId: string; file: string }): void {
  if (WebAssembly.validate(source)) return;
  let reason = 'it does not validate';
  try {
    new WebAssembly.Module(source);
  } catch (error) {
    reason = (error as Error).message;
  }
  throw new ReedError('wasm_invalid', `${at.file} is not a valid WebAssembly module: ${reason}`, at);
}
