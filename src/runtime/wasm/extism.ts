// Extism plugins (docs/ABI-wasm.md, "Extism plugins"): the `extism:host/env` import set, how a module is known to
// use it, and our own kernel: the memory blocks Extism's ABI passes data in, kept in a host-side arena, with the
// call's input and output, the plugin's error, its configuration, its variables and its log. Written from Extism's
// documented ABI; no code of Extism's is used. The runtime (wasm-plugin.ts) builds one ExtismKernel per instance
// and gives it an ExtismIo, as it gives WASI a WasiIo.
import { ReedError } from '../../errors.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import type { WasmAbi } from '../../manifest/types.js';
import { escapeUnprintable } from '../../safe-text.js';
import { MAX_KEY_BYTES } from '../host-api.js';
import type { FuncType, ModuleExport, ModuleImport } from './module-sections.js';

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
  return exports
    .filter(
      (e) =>
        e.kind === 'function' &&
        e.type !== undefined &&
        e.type.params.length === 0 &&
        e.type.results.length === 1 &&
        e.type.results[0] === 'i32' &&
        !e.name.startsWith('_'),
    )
    .map((e) => e.name);
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

/** What the kernel needs of the runtime that runs the plugin (wasm-plugin.ts). */
export interface ExtismIo {
  readonly pluginId: string;
  readonly limits: Pick<ResolvedLimits, 'memoryMb' | 'maxOutputBytes' | 'logLineBytes' | 'extismVarBytes'>;
  /** The host's log level in Extism's numbering (extismLogLevel): get_log_level, and lines below it are dropped. */
  readonly logLevel: number;
  /** Charges fuel for work about to be done; throws (fuel, deadline) when the call may not do it. */
  charge(fuel: number): void;
  /** A log line to the plugin's log at our level (0 debug .. 3 error), rate-capped and charged by the runtime. */
  log(level: number, text: string): void;
  /** The plugin's `[configuration]` value at `key` as JSON (config_get of the host API), or undefined. */
  config(key: string): string | undefined;
}

/** One memory block: `length` bytes at `start` in the arena, within `capacity` reserved ones. */
interface Block {
  readonly start: number;
  readonly length: number;
  readonly capacity: number;
  live: boolean;
}

/** The first offset handed out: 0 means "none" in Extism's ABI. */
const ARENA_BASE = 8;
/** What each block counts against the arena's cap besides its bytes (the host's bookkeeping of it). */
export const BLOCK_OVERHEAD_BYTES = 64;
/** What each variable counts against limits.extism_var_bytes besides its key and value bytes. */
export const VAR_OVERHEAD_BYTES = 48;
/** The most of an error_set message kept (as reed.error_set keeps). */
export const MAX_ERROR_MESSAGE_BYTES = 4_096;
const FIRST_ARENA_BYTES = 64 * 1024;
/** Extism's log levels (trace .. error) as ours (0 debug, 1 info, 2 warn, 3 error). */
const LOG_LEVELS = {
  log_trace: [0, 0],
  log_debug: [1, 0],
  log_info: [2, 1],
  log_warn: [3, 2],
  log_error: [4, 3],
} as const;

const lenient = new TextDecoder('utf-8');
const strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
const align8 = (n: number) => (n + 7) & ~7;

/**
 * Our Extism kernel for one instance. Memory blocks live in a host-side arena (a byte array the plugin reaches only
 * through load/store imports), capped at limits.memory_mb with BLOCK_OVERHEAD_BYTES per block; every access must
 * lie inside one live block (wasm_out_of_bounds otherwise, a trap); blocks are allocated by bumping, a freed block
 * is reused by a later one of the same size or given back when it is the last, and every block is freed when the
 * call ends. Variables live as long as the instance. Every byte allocated or copied is charged before it is.
 */
export class ExtismKernel {
  readonly #io: ExtismIo;
  readonly #maxBytes: number;
  #arena: Uint8Array = new Uint8Array(0);
  #view: DataView = new DataView(this.#arena.buffer);
  /** Live and freed blocks, by start: the order they were bumped in. */
  #blocks: Block[] = [];
  /** Freed blocks by capacity, for reuse (an entry no longer in #blocks is stale and skipped). */
  #free = new Map<number, Block[]>();
  #top = ARENA_BASE;
  /** Bytes at and past this offset are zero (never used since the arena was made or grown). */
  #clean = ARENA_BASE;
  #last: Block | undefined;
  // Per call.
  #input: Uint8Array = new Uint8Array(0);
  #inputView: DataView = new DataView(this.#input.buffer);
  #inputBlock: Block | undefined;
  #inputGone = false;
  #output: { block: Block; at: number; length: number } | undefined;
  #error: Block | undefined;
  // Per instance.
  readonly #vars = new Map<string, Uint8Array>();
  #varBytes = 0;

  constructor(io: ExtismIo) {
    this.#io = io;
    this.#maxBytes = io.limits.memoryMb * 1024 * 1024;
  }

  /** A call starts: `input` is its input; no block, output or error is left from before. */
  begin(input: Uint8Array): void {
    this.#reset();
    this.#input = input;
    this.#inputView = new DataView(input.buffer, input.byteOffset, input.byteLength);
    this.#inputGone = false;
  }

  /**
   * A call ended (the guest returned): its output (what output_set named, read now, as Extism reads it after the
   * call) and its error_set message, if any; then every block is freed.
   */
  finish(): { output: Uint8Array | undefined; error: string | undefined } {
    let output: Uint8Array | undefined;
    let error: string | undefined;
    try {
      const o = this.#output;
      if (o !== undefined) {
        if (!o.block.live) {
          throw this.#outOfBounds(
            `set its output to a memory block at ${o.block.start} that it freed before returning`,
          );
        }
        output = this.#arena.slice(o.at, o.at + o.length);
      }
      const e = this.#error;
      if (e?.live === true && e.length > 0) {
        const bytes = this.#arena.subarray(e.start, e.start + Math.min(e.length, MAX_ERROR_MESSAGE_BYTES));
        error = escapeUnprintable(lenient.decode(bytes));
      }
    } finally {
      this.#reset();
      this.#input = new Uint8Array(0);
    }
    return { output, error };
  }

  /** The `extism:host/env` functions, unguarded (the runtime puts each behind its guard). */
  imports(): Record<string, (...args: never[]) => unknown> {
    const io = this.#io;
    const fns: Record<keyof typeof EXTISM_IMPORTS, (...args: never[]) => unknown> = {
      alloc: (n: bigint) => BigInt(this.#alloc(Number(n))?.start ?? 0),
      free: (h: bigint) => this.#freeAt(Number(h)),
      length: (h: bigint) => BigInt(this.#blockAt(Number(h))?.length ?? 0),
      length_unsafe: (h: bigint) => BigInt(this.#blockAt(Number(h))?.length ?? 0),
      load_u8: (p: bigint) => this.#arena[this.#at(p, 1, 'load_u8')],
      load_u64: (p: bigint) => this.#view.getBigUint64(this.#at(p, 8, 'load_u64'), true),
      store_u8: (p: bigint, value: number) => {
        this.#arena[this.#at(p, 1, 'store_u8')] = value;
      },
      store_u64: (p: bigint, value: bigint) =>
        this.#view.setBigUint64(this.#at(p, 8, 'store_u64'), value, true),
      input_offset: () => BigInt(this.#inputOffset()),
      input_length: () => BigInt(this.#inputGone ? 0 : this.#input.length),
      input_load_u8: (offset: bigint) => this.#input[this.#inputAt(offset, 1, 'input_load_u8')],
      input_load_u64: (offset: bigint) =>
        this.#inputView.getBigUint64(this.#inputAt(offset, 8, 'input_load_u64'), true),
      output_set: (p: bigint, length: bigint) => this.#outputSet(Number(p), Number(length)),
      error_set: (h: bigint) => {
        const at = Number(h);
        if (at === 0) this.#error = undefined;
        else {
          const block = this.#handle(at, 'error_set');
          io.charge(Math.min(block.length, MAX_ERROR_MESSAGE_BYTES));
          this.#error = block;
        }
      },
      error_get: () => BigInt(this.#error?.live === true ? this.#error.start : 0),
      config_get: (h: bigint) => BigInt(this.#configGet(Number(h))),
      var_get: (h: bigint) => BigInt(this.#varGet(Number(h))),
      var_set: (k: bigint, v: bigint) => this.#varSet(Number(k), Number(v)),
      http_request: () => {
        throw new ReedError(
          'permission_denied',
          `plugin "${io.pluginId}" called http_request: outbound HTTP is not a capability plugins have (a later one); the call fails`,
          { pluginId: io.pluginId },
        );
      },
      http_status_code: () => 0,
      http_headers: () => 0n,
      log_trace: (h: bigint) => this.#log('log_trace', Number(h)),
      log_debug: (h: bigint) => this.#log('log_debug', Number(h)),
      log_info: (h: bigint) => this.#log('log_info', Number(h)),
      log_warn: (h: bigint) => this.#log('log_warn', Number(h)),
      log_error: (h: bigint) => this.#log('log_error', Number(h)),
      get_log_level: () => io.logLevel,
      reset: () => {
        this.#reset();
        this.#inputGone = true;
      },
      memory_bytes: () => BigInt(this.#top - ARENA_BASE),
    };
    return fns;
  }

  // --- blocks ------------------------------------------------------------------------------------------

  /** Frees every block (the arena's bytes are kept for the next call, and zeroed as they are handed out again). */
  #reset(): void {
    this.#blocks = [];
    this.#free.clear();
    this.#top = ARENA_BASE;
    this.#last = undefined;
    this.#inputBlock = undefined;
    this.#output = undefined;
    this.#error = undefined;
  }

  /** A new zeroed block of `n` bytes, charged; undefined for 0 bytes (Extism's alloc(0) answers 0). */
  #alloc(n: number): Block | undefined {
    if (n === 0) return undefined;
    const capacity = align8(n);
    if (!(n > 0) || this.#usedBytes() + capacity + BLOCK_OVERHEAD_BYTES > this.#maxBytes) {
      throw new ReedError(
        'extism_memory_limit',
        `plugin "${this.#io.pluginId}" asked for an Extism memory block of ${n} bytes with ${this.#usedBytes()} in use; its blocks may hold ${this.#maxBytes} bytes (limits.memory_mb, ${BLOCK_OVERHEAD_BYTES} bytes counted per block)`,
        { pluginId: this.#io.pluginId },
      );
    }
    this.#io.charge(n);
    const reused = this.#reuse(capacity, n);
    if (reused !== undefined) return reused;
    const start = this.#top;
    const end = start + capacity;
    if (end > this.#arena.length) this.#grow(end);
    if (start < this.#clean) this.#arena.fill(0, start, Math.min(end, this.#clean));
    this.#clean = Math.max(this.#clean, end);
    this.#top = end;
    const block: Block = { start, length: n, capacity, live: true };
    this.#blocks.push(block);
    return block;
  }

  /** A freed block of exactly `capacity`, still in place, made live again for `n` bytes (zeroed). */
  #reuse(capacity: number, n: number): Block | undefined {
    const list = this.#free.get(capacity);
    while (list !== undefined && list.length > 0) {
      const old = list.pop() as Block;
      const index = this.#indexOf(old.start);
      if (index < 0 || this.#blocks[index] !== old) continue; // given back since
      const block: Block = { start: old.start, length: n, capacity, live: true };
      this.#blocks[index] = block;
      this.#arena.fill(0, block.start, block.start + capacity);
      return block;
    }
    return undefined;
  }

  #grow(end: number): void {
    let size = Math.max(this.#arena.length * 2, FIRST_ARENA_BYTES);
    while (size < end) size *= 2;
    size = Math.min(size, this.#maxBytes + ARENA_BASE);
    this.#io.charge(this.#arena.length); // the copy
    const grown = new Uint8Array(size);
    grown.set(this.#arena);
    this.#arena = grown;
    this.#view = new DataView(grown.buffer);
  }

  #usedBytes(): number {
    return this.#top - ARENA_BASE + this.#blocks.length * BLOCK_OVERHEAD_BYTES;
  }

  #freeAt(at: number): void {
    const block = this.#blockAt(at);
    if (block === undefined) return; // 0, freed already, or not a block: as Extism's free, nothing happens
    block.live = false;
    if (block === this.#inputBlock) this.#inputGone = true;
    // The last blocks, once free, go back to the bump pointer; any other waits for a block of its size.
    if (block === this.#blocks[this.#blocks.length - 1]) {
      while (this.#blocks.length > 0 && !(this.#blocks[this.#blocks.length - 1] as Block).live) {
        this.#top = (this.#blocks.pop() as Block).start;
      }
      return;
    }
    const list = this.#free.get(block.capacity);
    if (list === undefined) this.#free.set(block.capacity, [block]);
    else list.push(block);
  }

  /** The index in #blocks of the block starting at `start`, or -1. */
  #indexOf(start: number): number {
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = (blocks[mid] as Block).start;
      if (s === start) return mid;
      if (s < start) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The live block that starts at `at`, if any (a handle: what alloc returned). */
  #blockAt(at: number): Block | undefined {
    if (!(at >= ARENA_BASE && at < this.#top)) return undefined;
    const block = this.#blocks[this.#indexOf(at)];
    return block?.live === true ? block : undefined;
  }

  /** The live block that starts at `at`, or wasm_out_of_bounds: a handle another function takes. */
  #handle(at: number, what: string): Block {
    const block = this.#blockAt(at);
    if (block === undefined)
      throw this.#outOfBounds(`passed ${at} to ${what}, which is not a live memory block`);
    return block;
  }

  /** `[p, p+n)` as an arena index when it lies inside one live block; wasm_out_of_bounds otherwise. */
  #at(ptr: bigint, n: number, what: string): number {
    this.#io.charge(n);
    const p = Number(ptr);
    const last = this.#last;
    if (last?.live === true && p >= last.start && p + n <= last.start + last.length) return p;
    const block = this.#containing(p, n);
    if (block === undefined) {
      throw this.#outOfBounds(
        `passed [${ptr}, ${ptr + BigInt(n)}) to ${what}, outside every live memory block`,
      );
    }
    this.#last = block;
    return p;
  }

  /** The live block holding all of `[p, p+n)`, if any. */
  #containing(p: number, n: number): Block | undefined {
    if (!(p >= ARENA_BASE && p + n <= this.#top)) return undefined;
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((blocks[mid] as Block).start <= p) lo = mid;
      else hi = mid - 1;
    }
    const block = blocks[lo];
    return block?.live === true && p >= block.start && p + n <= block.start + block.length
      ? block
      : undefined;
  }

  #outOfBounds(what: string): ReedError {
    return new ReedError('wasm_out_of_bounds', `plugin "${this.#io.pluginId}" ${what}`, {
      pluginId: this.#io.pluginId,
    });
  }

  /** A block's bytes, charged (a view: copy what is kept). */
  #read(block: Block, max = block.length): Uint8Array {
    const n = Math.min(block.length, max);
    this.#io.charge(n);
    return this.#arena.subarray(block.start, block.start + n);
  }

  /** A new block holding `bytes` (0 for none), charged. */
  #give(bytes: Uint8Array): number {
    const block = this.#alloc(bytes.length);
    if (block === undefined) return 0;
    this.#io.charge(bytes.length);
    this.#arena.set(bytes, block.start);
    return block.start;
  }

  // --- input and output --------------------------------------------------------------------------------

  /** The input as a block (made on first use: most plugins read it with input_load_*). */
  #inputOffset(): number {
    if (this.#inputGone) return 0;
    if (this.#inputBlock === undefined) {
      const start = this.#give(this.#input);
      if (start === 0) return 0;
      this.#inputBlock = this.#blockAt(start);
    }
    return this.#inputBlock?.start ?? 0;
  }

  #inputAt(offset: bigint, n: number, what: string): number {
    this.#io.charge(n);
    const o = Number(offset);
    const length = this.#inputGone ? 0 : this.#input.length;
    if (!(o >= 0 && o + n <= length)) {
      throw this.#outOfBounds(
        `passed [${offset}, ${offset + BigInt(n)}) to ${what}; its input is ${length} bytes`,
      );
    }
    return o;
  }

  #outputSet(p: number, length: number): void {
    if (!(length >= 0)) throw this.#outOfBounds(`passed a negative length (${length}) to output_set`);
    if (length > this.#io.limits.maxOutputBytes) {
      throw new ReedError(
        'output_too_large',
        `plugin "${this.#io.pluginId}" set an output of ${length} bytes, more than ${this.#io.limits.maxOutputBytes} (limits.max_output_bytes)`,
        { pluginId: this.#io.pluginId },
      );
    }
    if (p === 0 && length === 0) {
      this.#output = undefined;
      return;
    }
    const block = this.#containing(p, length);
    if (block === undefined) {
      throw this.#outOfBounds(`passed [${p}, ${p + length}) to output_set, outside every live memory block`);
    }
    this.#io.charge(length); // the copy made when the call ends
    this.#output = { block, at: p, length };
  }

  // --- configuration, variables, log -------------------------------------------------------------------

  /** A key block's bytes (at most `max`; a longer key is refused before it is read), and the block is freed. */
  #key(at: number, what: string, max: number): Uint8Array | undefined {
    const block = this.#handle(at, what);
    if (block.length > max) {
      this.#freeAt(at);
      return undefined;
    }
    const key = this.#read(block).slice();
    this.#freeAt(at); // the function takes ownership of the handle, as Extism's does
    return key;
  }

  #configGet(at: number): number {
    const key = this.#key(at, 'config_get', MAX_KEY_BYTES);
    if (key === undefined) {
      throw new ReedError(
        'argument_too_large',
        `plugin "${this.#io.pluginId}" passed config_get a key over ${MAX_KEY_BYTES} bytes`,
        { pluginId: this.#io.pluginId },
      );
    }
    let name: string;
    try {
      name = strict.decode(key);
    } catch {
      throw new ReedError(
        'invalid_argument',
        `plugin "${this.#io.pluginId}" passed config_get a key that is not valid UTF-8`,
        { pluginId: this.#io.pluginId },
      );
    }
    const json = this.#io.config(name);
    if (json === undefined) return 0;
    // Strings as they are; other values (numbers, booleans, tables, arrays) as their JSON text.
    const value = json.startsWith('"') ? (JSON.parse(json) as string) : json;
    return this.#give(encoder.encode(value));
  }

  #varGet(at: number): number {
    const key = this.#key(at, 'var_get', this.#io.limits.extismVarBytes);
    const value = key === undefined ? undefined : this.#vars.get(binaryKey(key));
    return value === undefined ? 0 : this.#give(value);
  }

  #varSet(keyAt: number, valueAt: number): void {
    const quota = this.#io.limits.extismVarBytes;
    const keyBlock = this.#handle(keyAt, 'var_set');
    const valueBlock = valueAt === 0 ? undefined : this.#handle(valueAt, 'var_set');
    const name = binaryKey(this.#read(keyBlock, quota + 1));
    const old = this.#vars.get(name);
    const oldBytes = old === undefined ? 0 : name.length + old.length + VAR_OVERHEAD_BYTES;
    if (valueBlock === undefined) {
      this.#vars.delete(name);
      this.#varBytes -= oldBytes;
    } else {
      const bytes = keyBlock.length + valueBlock.length + VAR_OVERHEAD_BYTES;
      if (this.#varBytes - oldBytes + bytes > quota) {
        throw new ReedError(
          'extism_var_quota_exceeded',
          `plugin "${this.#io.pluginId}" would hold ${this.#varBytes - oldBytes + bytes} bytes of Extism variables, more than ${quota} (limits.extism_var_bytes, ${VAR_OVERHEAD_BYTES} bytes counted per variable)`,
          { pluginId: this.#io.pluginId },
        );
      }
      this.#vars.set(name, this.#read(valueBlock).slice());
      this.#varBytes += bytes - oldBytes;
    }
    this.#freeAt(keyAt);
    if (valueAt !== keyAt) this.#freeAt(valueAt);
  }

  #log(fn: keyof typeof LOG_LEVELS, at: number): void {
    const [extismLevel, level] = LOG_LEVELS[fn];
    if (at === 0) return;
    const block = this.#handle(at, fn);
    // Below the host's level, Extism drops a line unread; so do we. Only what the log keeps is decoded.
    if (extismLevel >= this.#io.logLevel) {
      const text = lenient.decode(this.#read(block, this.#io.limits.logLineBytes + 4));
      this.#io.log(level, text);
    }
    this.#freeAt(at);
  }
}

/** A variable's name as a string that keeps its bytes as they are (one character per byte). */
function binaryKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
