import { ReedError } from '../../errors.js';
import { expectedSignature, HOST_ROUND_TRIP_IMPORTS, isKnownImport, sameSignature } from './abi.js';
import { type ModuleExport, type ModuleImport, prepareModule } from './prepare-module.js';

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
 * Validates (V8), instruments and checks the imports of `source`, whose shape module-limits.ts has already
 * bounded. Synchronous and self-contained: it runs in a worker for large modules (compile-wasm.ts).
 */
export function runPrepareJob(source: Uint8Array, job: PrepareJob): PrepareResult {
  const at = { pluginId: job.pluginId, file: job.file };
  if (!WebAssembly.validate(source)) {
    let reason = 'it does not validate';
    try {
      new WebAssembly.Module(source);
    } catch (error) {
      reason = (error as Error).message;
    }
    throw new ReedError('wasm_invalid', `${job.file} is not a valid WebAssembly module: ${reason}`, at);
  }
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
  checkImports(prepared.imports, at);
  return {
    bytes: prepared.bytes,
    info: {
      exports: prepared.exports,
      isCommand: prepared.isCommand,
      hostCalls: prepared.imports.some((i) => i.module === 'reed' && HOST_ROUND_TRIP_IMPORTS.has(i.name)),
    },
  };
}

function checkImports(imports: readonly ModuleImport[], at: { pluginId: string; file: string }): void {
  for (const imp of imports) {
    const name = `${imp.module}.${imp.name}`;
    if (imp.kind !== 'function' || !isKnownImport(imp.module, imp.name)) {
      throw new ReedError(
        'wasm_import_unknown',
        `${at.file} imports ${imp.kind} "${name}", which the host does not provide (see docs/ABI-wasm.md)`,
        at,
      );
    }
    const expected = expectedSignature(imp.module, imp.name);
    if (expected !== undefined && imp.type !== undefined && !sameSignature(expected, imp.type)) {
      throw new ReedError(
        'wasm_import_signature',
        `${at.file} imports "${name}" as (${imp.type.params.join(', ')}) -> (${imp.type.results.join(', ')}); the ABI has (${expected.params.join(', ')}) -> (${expected.results.join(', ')})`,
        at,
      );
    }
  }
}
