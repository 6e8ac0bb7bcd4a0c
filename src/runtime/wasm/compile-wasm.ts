import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { type CacheEntry, type CompileCache, cacheKey } from '../../cache/compile-cache.js';
import { ReedError } from '../../errors.js';
import { expectedSignature, HOST_ROUND_TRIP_IMPORTS, isKnownImport, sameSignature } from './abi.js';
import {
  INSTRUMENTER_VERSION,
  type ModuleExport,
  type ModuleImport,
  prepareModule,
  WASM_PAGE_BYTES,
} from './prepare-module.js';

export interface WasmCompileOptions {
  pluginId: string;
  memoryMb: number;
  tableElements: number;
  fuelPerCall: number;
  /** Instrument for fuel. Default true; off only for measuring the instrumentation itself. */
  fuel?: boolean;
  /** Largest module accepted. Default 64 MiB. */
  maxModuleBytes?: number;
  cache?: CompileCache;
  /** The module bytes when the caller already read (and verified) them; otherwise `file` is read. */
  bytes?: Uint8Array;
}

export interface PreparedWasm {
  /** The checked, instrumented module bytes. */
  bytes: Uint8Array;
  exports: ModuleExport[];
  isCommand: boolean;
  /** Whether it imports host functions that need the host's answer (see HOST_ROUND_TRIP_IMPORTS). */
  hostCalls: boolean;
  cacheHit: boolean;
  key: string;
}

export interface CompiledWasm extends PreparedWasm {
  module: WebAssembly.Module;
}

interface PreparedInfo {
  exports: ModuleExport[];
  isCommand: boolean;
  hostCalls?: boolean;
}

export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;
const compiled = new Map<string, Promise<WebAssembly.Module>>();

/**
 * Checks a module before compiling it (size, `WebAssembly.validate`, imports against the ABI, memory and
 * table declarations), instruments it, and compiles it. The prepared bytes go through the compile cache;
 * compiled modules are shared within the process by the same key, so loading a module twice compiles once.
 */
export async function compileWasm(file: string, options: WasmCompileOptions): Promise<CompiledWasm> {
  const prepared = await prepareWasm(file, options);
  let modulePromise = compiled.get(prepared.key);
  if (modulePromise === undefined) {
    modulePromise = WebAssembly.compile(prepared.bytes);
    compiled.set(prepared.key, modulePromise);
    modulePromise.catch(() => compiled.delete(prepared.key));
  }
  return { ...prepared, module: await modulePromise };
}

/** Everything `compileWasm` does but the compile: what a runner in another process needs to be sent. */
export async function prepareWasm(file: string, options: WasmCompileOptions): Promise<PreparedWasm> {
  const at = { pluginId: options.pluginId, file };
  const maxBytes = options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES;
  if (options.bytes !== undefined && options.bytes.length > maxBytes) {
    throw new ReedError(
      'wasm_too_large',
      `${file} is ${options.bytes.length} bytes, above the cap of ${maxBytes} bytes`,
      at,
    );
  }
  const source = options.bytes ?? readModule(file, maxBytes, at);
  const fuel = options.fuel ?? true;
  const memoryCapPages = Math.floor((options.memoryMb * 1024 * 1024) / WASM_PAGE_BYTES);
  const key = cacheKey(
    {
      instrumenter: INSTRUMENTER_VERSION,
      fuel,
      memoryCapPages,
      tableCap: options.tableElements,
      initialFuel: options.fuelPerCall,
    },
    source,
  );
  const produce = async () => {
    if (!WebAssembly.validate(source)) {
      let reason = 'it does not validate';
      try {
        new WebAssembly.Module(source);
      } catch (error) {
        reason = (error as Error).message;
      }
      throw new ReedError('wasm_invalid', `${file} is not a valid WebAssembly module: ${reason}`, at);
    }
    const prepared = withLocation(at, () =>
      prepareModule(source, {
        fuel,
        initialFuel: BigInt(options.fuelPerCall),
        memoryCapPages,
        tableCapElements: options.tableElements,
      }),
    );
    checkImports(prepared.imports, at);
    const info: PreparedInfo = {
      exports: prepared.exports,
      isCommand: prepared.isCommand,
      hostCalls: prepared.imports.some((i) => i.module === 'reed' && HOST_ROUND_TRIP_IMPORTS.has(i.name)),
    };
    return { bytes: prepared.bytes, info, compilerVersion: `reed-instrumenter/${INSTRUMENTER_VERSION}` };
  };
  let entry: CacheEntry;
  if (options.cache === undefined) {
    const produced = await produce();
    entry = {
      bytes: produced.bytes,
      hit: false,
      metadata: { info: produced.info } as CacheEntry['metadata'],
    };
  } else {
    entry = await options.cache.get(key, produce);
  }
  const info = entry.metadata.info as PreparedInfo;
  return {
    bytes: entry.bytes,
    exports: info.exports,
    isCommand: info.isCommand,
    hostCalls: info.hostCalls ?? true,
    cacheHit: entry.hit,
    key,
  };
}

function readModule(file: string, maxBytes: number, at: { pluginId: string; file: string }): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    throw new ReedError('wasm_invalid', `cannot read ${file}: ${(error as Error).message}`, {
      ...at,
      cause: error,
    });
  }
  try {
    const { size } = fstatSync(fd);
    if (size > maxBytes) {
      throw new ReedError(
        'wasm_too_large',
        `${file} is ${size} bytes, above the cap of ${maxBytes} bytes`,
        at,
      );
    }
    const bytes = new Uint8Array(size);
    let read = 0;
    while (read < size) {
      const n = readSync(fd, bytes, read, size - read, null);
      if (n === 0) break;
      read += n;
    }
    return bytes.subarray(0, read);
  } finally {
    closeSync(fd);
  }
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

function withLocation<T>(at: { pluginId: string; file: string }, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof ReedError && error.file === undefined) {
      throw new ReedError(error.code, `${at.file}: ${error.message}`, { ...at, cause: error });
    }
    throw error;
  }
}
