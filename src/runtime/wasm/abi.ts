import type { FuncType, ValType } from './prepare-module.js';
import { WASI_FUNCTIONS, WASI_MODULE } from './wasi.js';

/**
 * The WASM plugin ABI, version 1 (docs/ABI-wasm.md): every host import a plugin may declare, with its exact
 * signature. A module importing anything else, or with another signature, is refused before it is compiled.
 */
const i = 'i32' as const;
const sig = (params: ValType[], results: ValType[] = []): FuncType => ({ params, results });

export const HOST_IMPORTS: Readonly<Record<string, Readonly<Record<string, FuncType>>>> = {
  env: {
    log: sig([i, i, i]),
  },
  reed: {
    input_len: sig([], [i]),
    input_read: sig([i, i, i], [i]),
    output_write: sig([i, i], [i]),
    error_set: sig([i, i, i, i]),
    storage_get: sig([i, i, i, i], [i]),
    storage_put: sig([i, i, i, i], [i]),
    storage_delete: sig([i, i], [i]),
    storage_list: sig([i, i, i, i], [i]),
    content_create: sig([i, i, i, i, i, i], [i]),
    content_get: sig([i, i, i, i], [i]),
    event_emit: sig([i, i, i, i], [i]),
    config_get: sig([i, i, i, i], [i]),
  },
};

/** Status a host import returns for "no such key/item"; other failures trap with a typed error. */
export const NOT_FOUND = -1;

// What host work costs in fuel (issue 10, class 6). Fuel counts instructions, but one import can copy,
// generate or walk megabytes; each import charges its work before doing it (docs/ABI-wasm.md, "How fuel works").
/** Every host import, before anything else: its fixed overhead. */
export const FUEL_PER_HOST_CALL = 100;
/** Per byte a host import copies, decodes or encodes. */
export const FUEL_PER_BYTE = 1;
/** Per byte of randomness (random_get): generating costs several copies' worth. */
export const FUEL_PER_RANDOM_BYTE = 4;
/** Per iovec walked (fd_write, fd_read). */
export const FUEL_PER_IOVEC = 16;
/**
 * Per log line: each line split out of stdout/stderr, and each env.log line the rate cap lets through to the
 * host (lines over the rate are dropped before they leave the runtime, for the cost of the call alone).
 */
export const FUEL_PER_LOG_LINE = 200;
/** The most iovecs one fd_write/fd_read takes (POSIX IOV_MAX); more is EINVAL, as writev(2) answers. */
export const MAX_IOVECS = 1_024;

/** Exports with these names are lifecycle hooks or runtime internals, never callable functions. */
export const RESERVED_EXPORTS: ReadonlySet<string> = new Set(['init', 'deactivate', '_initialize', 'memory']);

export function isKnownImport(module: string, name: string): boolean {
  if (module === WASI_MODULE) return WASI_FUNCTIONS.has(name);
  return expectedSignature(module, name) !== undefined;
}

/** Own properties only: import names come from the module, and `constructor` or `__proto__` must not resolve. */
export function expectedSignature(module: string, name: string): FuncType | undefined {
  const functions = Object.hasOwn(HOST_IMPORTS, module) ? HOST_IMPORTS[module] : undefined;
  return functions !== undefined && Object.hasOwn(functions, name) ? functions[name] : undefined;
}

export function sameSignature(a: FuncType, b: FuncType): boolean {
  return a.params.join() === b.params.join() && a.results.join() === b.results.join();
}

/** Imports whose answer only the host can give (permission checks, shared services): a runner must ask it. */
export const HOST_ROUND_TRIP_IMPORTS: ReadonlySet<string> = new Set([
  'storage_get',
  'storage_put',
  'storage_delete',
  'storage_list',
  'content_create',
  'content_get',
  'event_emit',
]);
