// Extism plugins (docs/ABI-wasm.md, "Extism plugins"): the `extism:host/env` import set, how a module is known to
// speak it, and what is callable. Our kernel, written from Extism's documented ABI (no code of Extism's is used),
// is extism-kernel.ts over extism-arena.ts; the runtime (wasm-plugin.ts) builds one ExtismKernel per instance and
// gives it an ExtismIo, as it gives WASI a WasiIo.
import { ReedError } from '../../errors.js';
import type { WasmAbi } from '../../manifest/types.js';
import { type FuncType, isI32Thunk, type ModuleExport, type ModuleImport } from './module-sections.js';

/** The module Extism's host functions are imported from. */
export const EXTISM_MODULE = 'extism:host/env';
/** The module Extism plugins import their host's own functions from: not supported here. */
export const EXTISM_USER_MODULE = 'extism:host/user';

const sig = (params: FuncType['params'], results: FuncType['results'] = []): FuncType => ({
  params,
  results,
});

/**
 * Every function of `extism:host/env` a plugin may import, with its signature (offsets and lengths are i64;
 * offset 0 means none). Anything else from that module is refused as wasm_import_unknown.
 */
export const EXTISM_IMPORTS: Readonly<Record<string, FuncType>> = {
  alloc: sig(['i64'], ['i64']),
  free: sig(['i64']),
  length: sig(['i64'], ['i64']),
  length_unsafe: sig(['i64'], ['i64']),
  load_u8: sig(['i64'], ['i32']),
  load_u64: sig(['i64'], ['i64']),
  store_u8: sig(['i64', 'i32']),
  store_u64: sig(['i64', 'i64']),
  input_offset: sig([], ['i64']),
  input_length: sig([], ['i64']),
  input_load_u8: sig(['i64'], ['i32']),
  input_load_u64: sig(['i64'], ['i64']),
  output_set: sig(['i64', 'i64']),
  error_set: sig(['i64']),
  error_get: sig([], ['i64']),
  config_get: sig(['i64'], ['i64']),
  var_get: sig(['i64'], ['i64']),
  var_set: sig(['i64', 'i64']),
  http_request: sig(['i64', 'i64'], ['i64']),
  http_status_code: sig([], ['i32']),
  http_headers: sig([], ['i64']),
  log_trace: sig(['i64']),
  log_debug: sig(['i64']),
  log_info: sig(['i64']),
  log_warn: sig(['i64']),
  log_error: sig(['i64']),
  get_log_level: sig([], ['i32']),
  reset: sig([]),
  memory_bytes: sig([], ['i64']),
};

/** The signature of `extism:host/env.name`, own properties only (names come from the module). */
export function extismSignature(name: string): FuncType | undefined {
  return Object.hasOwn(EXTISM_IMPORTS, name) ? EXTISM_IMPORTS[name] : undefined;
}

/**
 * The ABI a module's imports speak, or the error that refuses it: importing `extism:host/user` (an Extism host's
 * own functions), or both Extism's functions and ours. Called before each import is checked (abi.ts), so these
 * get their own codes rather than wasm_import_unknown.
 */
export function detectAbi(imports: readonly Pick<ModuleImport, 'module' | 'name'>[]): WasmAbi {
  const user = imports.find((i) => i.module === EXTISM_USER_MODULE);
  if (user !== undefined) {
    throw new ReedError(
      'extism_host_functions_unsupported',
      `the module imports "${EXTISM_USER_MODULE}.${user.name}": Extism host functions of the embedding application are not supported; only ${EXTISM_MODULE} (and WASI) are provided`,
    );
  }
  const extism = imports.some((i) => i.module === EXTISM_MODULE);
  const ours = imports.find((i) => i.module === 'env' || i.module === 'reed');
  if (extism && ours !== undefined) {
    throw new ReedError(
      'wasm_abi_mixed',
      `the module imports both Extism's ABI (${EXTISM_MODULE}) and reed's host API ("${ours.module}.${ours.name}"); a plugin speaks one of them`,
    );
  }
  return extism ? 'extism' : 'reed';
}

/** Refuses a module whose ABI is not the one its manifest's `abi` names (none named: either). */
export function checkDeclaredAbi(declared: WasmAbi | undefined, detected: WasmAbi): void {
  if (declared === undefined || declared === detected) return;
  const speaks =
    detected === 'extism'
      ? `imports ${EXTISM_MODULE}`
      : `does not import ${EXTISM_MODULE} (it speaks reed's ABI)`;
  throw new ReedError(
    'wasm_abi_mismatch',
    `plugin.toml says abi = "${declared}", but the module ${speaks}; fix the abi key or the module`,
  );
}

/**
 * An Extism plugin's callable functions: exports `() -> i32` (Extism's convention) whose names do not start with
 * `_` (`_start`, `_initialize`, runtime internals). Extism has no lifecycle hooks, so `init` and `deactivate` are
 * ordinary functions here.
 */
export function extismFunctions(exports: readonly ModuleExport[]): string[] {
  return exports.filter((e) => isI32Thunk(e) && !e.name.startsWith('_')).map((e) => e.name);
}

/** Whether a compiled module imports Extism's functions. */
export function isExtismModule(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) => i.module === EXTISM_MODULE);
}

/** get_log_level's answer for a host log level (pino's names): Extism's 0 trace .. 4 error; off = i32 max. */
export function extismLogLevel(level: string | undefined): number {
  switch (level) {
    case 'trace':
      return 0;
    case 'debug':
      return 1;
    case undefined:
    case 'info':
      return 2;
    case 'warn':
      return 3;
    case 'error':
    case 'fatal':
      return 4;
    default:
      return 2_147_483_647; // silent
  }
}
