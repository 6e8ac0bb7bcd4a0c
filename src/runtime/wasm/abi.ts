import {
  HOST_CALL_NAMES,
  HOST_FUNCTION_NAMES,
  HOST_FUNCTIONS,
  type HostFunction,
  type Param,
} from '../host-api.js';
import { EXTISM_MODULE, extismSignature } from './extism.js';
import { isI32Thunk } from './module-sections.js';
import type { FuncType, ModuleExport, ValType } from './prepare-module.js';
import { WASI_FUNCTIONS, WASI_MODULE } from './wasi-names.js';
import { wasiSignature } from './wasi-signatures.js';

/** A parameter's WASM value types: a pointer and a length (or capacity) are two i32s. */
function wasmParams(param: Param): ValType[] {
  return param.kind === 'i32' ? ['i32'] : ['i32', 'i32'];
}

/** The WASM signature of a host function, from its row: parameters by kind, an i32 back unless it answers nothing. */
export function wasmSignature(row: HostFunction): FuncType {
  return { params: row.params.flatMap(wasmParams), results: row.answer === 'nothing' ? [] : ['i32'] };
}

/**
 * The WASM plugin ABI, version 1 (docs/ABI-wasm.md): every host import a plugin may declare, with its exact
 * signature, from the host API table. A module importing anything else, or with another signature, is refused
 * before it is compiled.
 */
export const HOST_IMPORTS: Readonly<Record<string, Readonly<Record<string, FuncType>>>> = (() => {
  const modules: Record<'env' | 'reed', Record<string, FuncType>> = { env: {}, reed: {} };
  for (const name of HOST_FUNCTION_NAMES) {
    const row: HostFunction = HOST_FUNCTIONS[name];
    if (row.wasm !== undefined) modules[row.wasm][name] = wasmSignature(row);
  }
  return modules;
})();

// What host work costs in fuel (issue 10, class 6). Fuel counts instructions, but one import can copy,
// generate or walk megabytes; each import charges its work before doing it (docs/ABI-wasm.md, "How fuel works").
/**
 * What a load or store of an Extism plugin's memory pays (extism-fast.wat, which has it written in: they run in
 * WebAssembly, 16-24 ns each in a loop; at 100 they ran at 2.2-2.4x plain instructions' CPU per fuel), besides its
 * bytes. Other imports pay their price (importFuel).
 */
export const FUEL_PER_HOST_CALL = 256;
/**
 * Extism's host functions other than its loads and stores, which run in JavaScript (extism-kernel.ts): each 64-bit
 * argument and answer is a BigInt. bench/import-fuel.ts measured (mode none, Node 20, session 18) 76-121 ns for
 * length, input_length, input_load_u64, output_set; ~110-130 ns for an alloc or a free; a config_get of a 1-byte
 * key 3.5-4.8 µs, a var_get 1.4-3 µs, a var_set 1.2-1.5 µs, a log line ~170-200 ns before the runtime's
 * FUEL_PER_LOG_LINE. Priced like the others (within 2x of plain instructions' CPU per fuel, a power of two); before,
 * each paid 100 (config_get ran at 150x plain instructions' CPU per fuel).
 */
export const EXTISM_FUEL_PER_CALL = 2_048;
const EXTISM_IMPORT_FUEL: Readonly<Record<string, number>> = {
  config_get: 65_536,
  var_get: 32_768,
  var_set: 32_768,
  log_trace: 4_096,
  log_debug: 4_096,
  log_info: 4_096,
  log_warn: 4_096,
  log_error: 4_096,
};
/**
 * The price of a host import not priced higher: sched_yield, input_len, output_write of nothing took 10-23 ns, and
 * fuel's own rate is 0.04-0.08 ns of CPU per fuel for real programs (bench/fuel.ts's, on session 17's machine).
 */
export const FUEL_PER_IMPORT = 512;
/**
 * On top of its own price, each call a runner must ask the host for (HostFunction.reply): a storage_get over the
 * runner's socket took 300-340 µs of CPU, host's and runner's threads together, on session 17's 2-CPU VM (most of
 * it the kernel's, waking a thread four times a round trip), and ~650 µs on session 18's, where 2^22 ran at 2.5x
 * plain instructions' CPU per fuel (1.5-1.7x on session 17's): so 2^23. The default fuel_per_call allows ~120 such
 * calls, and the round trip itself is what is to be made cheaper. Mode none's calls are answered on the spot, and
 * pay nothing more.
 */
export const FUEL_PER_ROUND_TRIP = 1 << 23;
/**
 * On top of its price, each WASI call the host refuses with an errno (a bad descriptor, a path too long, a
 * directory that is not one): the refusal is thrown and caught on the host, 1-2 µs from a WASM frame, and paid only
 * the import's price before (FUEL_PER_IMPORT for most: 16-50x plain instructions' CPU per fuel in a loop of
 * refusals; the fourth review, session 19). test/security/wasi-fuel.test.ts, D.
 */
export const FUEL_PER_REFUSAL = 1 << 15;
/**
 * WASI imports whose fixed work costs more than FUEL_PER_IMPORT, at fuel's rate (bench/import-fuel.ts, in mode none
 * and in a runner, the larger taken: within 2x of plain instructions' CPU per fuel, rounded to a power of two; on
 * session 18's machine the prices session 17 set ran at 2.0-2.7x for the cheap ones, so each that did was doubled).
 * Filesystem work is charged by the engine as well (wasi-fs.ts: FUEL_PER_FS_OP, FUEL_PER_PATH_OP), bytes and
 * iovecs by each import.
 */
const WASI_IMPORT_FUEL: Readonly<Record<string, number>> = {
  args_get: 4_096,
  args_sizes_get: 4_096,
  environ_get: 4_096,
  environ_sizes_get: 4_096,
  clock_res_get: 8_192,
  clock_time_get: 8_192,
  fd_fdstat_get: 8_192,
  fd_prestat_get: 8_192,
  fd_prestat_dir_name: 8_192,
  fd_filestat_get: 16_384,
  fd_close: 16_384,
  fd_read: 8_192,
  fd_write: 32_768,
  fd_pread: 8_192,
  fd_pwrite: 32_768,
  poll_oneoff: 32_768,
  random_get: 65_536,
  // Found by session 20's import-fuel rows (bench/fixtures/import-costs): fsync runs writeback and a device flush
  // on the calling thread, 21-45 µs for a clean file, 124-212 µs after a 1-byte write (11-22x plain instructions'
  // CPU per fuel at FUEL_PER_IMPORT + FUEL_PER_FS_OP); fallocate, ftruncate and futimens 4-12 µs (1.4-4.7x).
  fd_sync: 2_097_152,
  fd_datasync: 2_097_152,
  fd_allocate: 65_536,
  fd_filestat_set_size: 131_072,
  fd_filestat_set_times: 32_768,
};

/**
 * What one call of import `module`.`name` pays before it runs (the guard's charge in wasm-plugin.ts).
 * `roundTripFuel`: FUEL_PER_ROUND_TRIP in a runner, 0 where the host answers on the spot.
 */
export function importFuel(module: string, name: string, roundTripFuel: number): number {
  if (module === WASI_MODULE) return priced(WASI_IMPORT_FUEL, name) ?? FUEL_PER_IMPORT;
  if (module === EXTISM_MODULE) return priced(EXTISM_IMPORT_FUEL, name) ?? EXTISM_FUEL_PER_CALL;
  if ((module === 'env' || module === 'reed') && Object.hasOwn(HOST_FUNCTIONS, name)) {
    const row: HostFunction = HOST_FUNCTIONS[name as keyof typeof HOST_FUNCTIONS];
    if (row.wasm === module) return (row.fuel ?? FUEL_PER_IMPORT) + (row.reply ? roundTripFuel : 0);
  }
  return FUEL_PER_IMPORT;
}
/** A table's own price for `name` (own properties only: names come from the module). */
function priced(table: Readonly<Record<string, number>>, name: string): number | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}
/**
 * Per byte of an error a plugin sets (reed's and Extism's error_set): it is decoded and escaped once, when the call
 * ends, at up to ~16 ns a byte (4 KiB of 0xE0 bytes: 67 us; of control characters, each escaped, more), so each
 * error_set pays for that, however many the plugin makes.
 */
export const FUEL_PER_ERROR_BYTE = 256;
/** The most of an error code (reed.error_set) kept. */
export const MAX_ERROR_CODE_BYTES = 128;
/** The most of an error message (reed's and Extism's error_set) kept. */
export const MAX_ERROR_MESSAGE_BYTES = 4_096;
/**
 * Per byte the host keeps a copy of in fresh memory (Extism's var_set), on top of FUEL_PER_BYTE: a fresh buffer's
 * pages are faulted in as it is filled, ~1.1 ns a byte (32 MiB values: 42 ms a var_set).
 */
export const FUEL_PER_KEPT_BYTE = 16;
/** Per byte a host import copies, decodes or encodes. */
export const FUEL_PER_BYTE = 1;
/** Per byte of randomness (random_get): generating costs several copies' worth. */
export const FUEL_PER_RANDOM_BYTE = 4;
/**
 * Per iovec walked (fd_write, fd_read, fd_pwrite, fd_pread): its view of guest memory made and handed on (16 until
 * the fifth review, session 21, found calls of 1,024 one-byte iovecs 13-70x under plain instructions' CPU per fuel;
 * bench/import-fuel.ts rows `*_iovecs`). What each sink then does per iovec is charged there (FUEL_PER_LOG_WRITE;
 * wasi-fs.ts FUEL_PER_FILE_IOVEC).
 */
export const FUEL_PER_IOVEC = 1_024;
/**
 * Per log line: each line split out of stdout/stderr, and each env.log line the rate cap lets through to the
 * host (lines over the rate are dropped before they leave the runtime, for the cost of the call alone).
 */
export const FUEL_PER_LOG_LINE = 8_192;
/**
 * Per piece of stdout/stderr written to a log line (each iovec an fd_write gives them): found, scanned for newlines
 * and copied into the line (a third review, session 18: 1,024 one-byte iovecs to stderr cost 390 us for 35,862
 * fuel, a slice and a part kept per byte; at 512 a piece, 380-440 us for 576,587 fuel in session 21: ~400 ns a
 * piece, 12.7-13.9x plain instructions' CPU per fuel; at 4,096, 1.35-2.54x, stdout's pieces the dearer: 8,192).
 */
export const FUEL_PER_LOG_WRITE = 8_192;
/**
 * What a run that traps used beside its fuel: V8 makes the trap's error and its stack trace (with the module's
 * function names), and the runtime classifies it, ~88 us more than a run that returns (a third review, session
 * 18: a plugin trapping at every call ran at 0.65 ns of CPU per fuel). Added to the run's fuel once it failed.
 */
export const FUEL_PER_TRAP = 1 << 21;
/** The most iovecs one fd_write/fd_read takes (POSIX IOV_MAX); more is EINVAL, as writev(2) answers. */
export const MAX_IOVECS = 1_024;

/** Exports with these names are lifecycle hooks or runtime internals, never callable functions. */
export const RESERVED_EXPORTS: ReadonlySet<string> = new Set(['init', 'deactivate', '_initialize', 'memory']);

/**
 * The functions a host may call on a module, by export name: a command's `_start` alone; otherwise every exported
 * `() -> i32` function but the lifecycle hooks and names starting with `_` (the runtime and validate both use this).
 */
export function callableFunctions(exports: readonly ModuleExport[], isCommand: boolean): string[] {
  if (isCommand) return ['_start'];
  return exports
    .filter((e) => isI32Thunk(e) && !RESERVED_EXPORTS.has(e.name) && !e.name.startsWith('_'))
    .map((e) => e.name);
}

export function isKnownImport(module: string, name: string): boolean {
  if (module === WASI_MODULE) return WASI_FUNCTIONS.has(name);
  return expectedSignature(module, name) !== undefined;
}

/** Own properties only: import names come from the module, and `constructor` or `__proto__` must not resolve. */
export function expectedSignature(module: string, name: string): FuncType | undefined {
  if (module === EXTISM_MODULE) return extismSignature(name);
  if (module === WASI_MODULE) return wasiSignature(name);
  const functions = Object.hasOwn(HOST_IMPORTS, module) ? HOST_IMPORTS[module] : undefined;
  return functions !== undefined && Object.hasOwn(functions, name) ? functions[name] : undefined;
}

export function sameSignature(a: FuncType, b: FuncType): boolean {
  return a.params.join() === b.params.join() && a.results.join() === b.results.join();
}

/** Imports whose answer only the host can give (permission checks, shared services): a runner must ask it. */
export const HOST_ROUND_TRIP_IMPORTS: ReadonlySet<string> = new Set(HOST_CALL_NAMES);
