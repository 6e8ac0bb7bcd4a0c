import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { type CacheEntry, type CompileCache, cacheKey } from '../../cache/compile-cache.js';
import { ReedError } from '../../errors.js';
import type { WasmAbi } from '../../manifest/types.js';
import { checkModule, type ModuleFacts, memoryCapPages } from './check-module.js';
import { DEFAULT_WASM_MODULE_LIMITS, type WasmModuleLimits } from './module-limits.js';
import { checkV8Valid, type PreparedInfo, type PrepareJob, runPrepareJob } from './prepare-job.js';
import { INSTRUMENTER_VERSION, type ModuleExport } from './prepare-module.js';
import { prepareOffThread } from './prepare-off-thread.js';

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
  /** What the module may contain; checked before anything else reads it. Default DEFAULT_WASM_MODULE_LIMITS. */
  limits?: WasmModuleLimits;
  /** Preparing a module larger than PREPARE_INLINE_MAX_BYTES runs in a worker ended after this. Default 30 s. */
  prepareTimeoutMs?: number;
  /** That worker's JavaScript heap (its old generation), in MiB. Default 256. */
  prepareMemoryMb?: number;
  /** The manifest's `abi`, when it names one (check-module.ts refuses a module speaking the other). */
  abi?: WasmAbi;
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

export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_PREPARE_TIMEOUT_MS = 30_000;
export const DEFAULT_PREPARE_MEMORY_MB = 256;
/**
 * Modules up to this size are prepared on the calling thread: with linear instrumentation that takes a few
 * milliseconds, less than starting a worker. Larger ones go to a worker (prepareOffThread).
 */
export const PREPARE_INLINE_MAX_BYTES = 256 * 1024;
const compiled = new Map<string, Promise<WebAssembly.Module>>();
/**
 * What preparing a key gave, kept beside its compiled module for modules up to PREPARE_INLINE_MAX_BYTES: loading
 * the same bytes again (a host of ten thousand plugins built from one module: bench/scale) then neither reads,
 * hashes and touches the cache entry nor prepares, once per plugin. Its bytes are shared and never written to.
 */
const preparedByKey = new Map<string, PreparedWasm>();

/**
 * Checks a module before compiling it (size, `WebAssembly.validate`, imports against the ABI, memory and
 * table declarations), instruments it, and compiles it. The prepared bytes go through the compile cache;
 * compiled modules are shared within the process by the same key, so loading a module twice compiles once.
 */
export async function compileWasm(file: string, options: WasmCompileOptions): Promise<CompiledWasm> {
  const at = { pluginId: options.pluginId, file };
  const source = checkedSource(file, options, at);
  const key = preparedKey(source, options);
  const known = preparedByKey.get(key);
  const prepared =
    known === undefined ? await prepareChecked(source, key, options, at) : { ...known, cacheHit: true };
  let modulePromise = compiled.get(key);
  if (modulePromise === undefined) {
    modulePromise = WebAssembly.compile(prepared.bytes);
    compiled.set(key, modulePromise);
    modulePromise.catch(() => {
      compiled.delete(key);
      preparedByKey.delete(key);
    });
  }
  const module = await modulePromise;
  if (known === undefined && prepared.bytes.length <= PREPARE_INLINE_MAX_BYTES)
    preparedByKey.set(key, prepared);
  return { ...prepared, module };
}

/** Everything `compileWasm` does but the compile: what a runner in another process needs to be sent. */
export async function prepareWasm(file: string, options: WasmCompileOptions): Promise<PreparedWasm> {
  const at = { pluginId: options.pluginId, file };
  const source = checkedSource(file, options, at);
  return prepareChecked(source, preparedKey(source, options), options, at);
}

/** The cache key of `source` prepared with `options`: every input that changes the prepared bytes. */
function preparedKey(source: Uint8Array, options: WasmCompileOptions): string {
  return cacheKey(
    {
      instrumenter: INSTRUMENTER_VERSION,
      fuel: options.fuel ?? true,
      memoryCapPages: memoryCapPages(options.memoryMb),
      tableCap: options.tableElements,
      initialFuel: options.fuelPerCall,
    },
    source,
  );
}

/** Prepares checked `source` (through the cache when there is one). */
async function prepareChecked(
  source: Uint8Array,
  key: string,
  options: WasmCompileOptions,
  at: { pluginId: string; file: string },
): Promise<PreparedWasm> {
  const fuel = options.fuel ?? true;
  const memoryCap = memoryCapPages(options.memoryMb);
  const job: PrepareJob = {
    ...at,
    fuel,
    initialFuel: BigInt(options.fuelPerCall),
    memoryCapPages: memoryCap,
    tableCapElements: options.tableElements,
  };
  const produce = () => producePrepared(source, job, options);
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

/**
 * The module's bytes (given or read), checked by checkModule before anything else looks at them (hashing, the
 * cache, V8): everything load refuses without compiling, the same check `reed-plugins validate` makes. It holds for
 * cached entries too, when the limits were lowered since.
 */
function checkedSource(
  file: string,
  options: WasmCompileOptions,
  at: { pluginId: string; file: string },
): Uint8Array {
  const maxBytes = options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES;
  const source = options.bytes ?? readModule(file, maxBytes, at);
  checkModule(source, modulePolicy(options), at);
  return source;
}

/** What checkModule judges a module against, from the options load and validate share. */
function modulePolicy(options: WasmCheckOptions) {
  return {
    maxModuleBytes: options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES,
    limits: options.limits ?? DEFAULT_WASM_MODULE_LIMITS,
    memoryCapPages: memoryCapPages(options.memoryMb),
    tableCapElements: options.tableElements,
    ...(options.abi === undefined ? {} : { abi: options.abi }),
  };
}

/** Prepares the module (inline when small, else in a bounded worker) as a compile-cache entry's contents. */
async function producePrepared(source: Uint8Array, job: PrepareJob, options: WasmCompileOptions) {
  const prepared =
    source.length <= PREPARE_INLINE_MAX_BYTES
      ? runPrepareJob(source, job)
      : await prepareOffThread(source, job, {
          timeoutMs: options.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS,
          memoryMb: options.prepareMemoryMb ?? DEFAULT_PREPARE_MEMORY_MB,
        });
  return {
    bytes: prepared.bytes,
    info: prepared.info,
    compilerVersion: `reed-instrumenter/${INSTRUMENTER_VERSION}`,
  };
}

/** What {@link checkWasmFile} needs: the host's [wasm] settings and the plugin's resolved memory and table caps. */
export type WasmCheckOptions = Pick<
  WasmCompileOptions,
  'pluginId' | 'memoryMb' | 'tableElements' | 'maxModuleBytes' | 'limits' | 'abi'
>;

/**
 * What `reed-plugins validate` checks of a module: the file read as loading reads it (bounded, no link followed),
 * then checkModule, the very check loading starts with, then V8's validation, as load runs it next (checkV8Valid).
 * Never compiles a valid module. The error, if any, or what was learned.
 */
export function checkWasmFile(
  file: string,
  options: WasmCheckOptions,
): { error: ReedError; facts?: undefined } | { error?: undefined; facts: ModuleFacts } {
  const at = { pluginId: options.pluginId, file };
  try {
    const source = readModule(file, options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES, at);
    const facts = checkModule(source, modulePolicy(options), at);
    // What load finds next, before instrumenting: V8's own validation (prepare-job.ts).
    checkV8Valid(source, at);
    return { facts };
  } catch (error) {
    if (error instanceof ReedError) return { error };
    throw error;
  }
}

// O_NOFOLLOW: discovery names the real file, so a link there was swapped in after the walk (it could point out of
// the plugin). O_NONBLOCK: a FIFO swapped in must not block the open.
const OPEN_MODULE =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0);

/**
 * A module file's bytes: a regular file, opened without following a link, refused past `maxBytes` before a byte
 * is read (wasm_too_large). Load (src/plan/read-source.ts) and validate read modules through this.
 */
export function readModule(
  file: string,
  maxBytes: number,
  at: { pluginId: string; file: string },
): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, OPEN_MODULE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new ReedError(
        'symlink_escape',
        `${file} became a symbolic link after discovery; it is not followed`,
        { ...at, cause: error },
      );
    }
    throw new ReedError('wasm_invalid', `cannot read ${file}: ${(error as Error).message}`, {
      ...at,
      cause: error,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ReedError('wasm_invalid', `${file} is not a regular file`, at);
    const size = st.size;
    if (size > maxBytes) {
      throw new ReedError(
        'wasm_too_large',
        `${file} is ${size} bytes, above the cap of ${maxBytes} bytes ([wasm] max_module_bytes)`,
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
