import { ReedError } from '../../errors.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { escapeUnprintable } from '../../safe-text.js';
import { MAX_KEY_BYTES } from '../host-api.js';
import type { EXTISM_IMPORTS } from './extism.js';
import { type Block, ExtismArena } from './extism-arena.js';

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

/** What each variable counts against limits.extism_var_bytes besides its key and value bytes. */
export const VAR_OVERHEAD_BYTES = 48;
/** The most of an error_set message kept (as reed.error_set keeps). */
export const MAX_ERROR_MESSAGE_BYTES = 4_096;
/** Extism's log functions: Extism's level (0 trace .. 4 error), and ours (0 debug, 1 info, 2 warn, 3 error). */
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
const NO_INPUT = new Uint8Array(0);

/**
 * Our Extism kernel for one instance (docs/ABI-wasm.md, "Extism plugins"), written from Extism's documented ABI:
 * the `extism:host/env` functions over an arena of memory blocks (extism-arena.ts), the call's input, output and
 * error, the plugin's configuration, its variables and its log. Blocks live for a call (every one is freed when
 * it ends); variables live as long as the instance, under limits.extism_var_bytes. A function that takes a block
 * (config_get, var_get, var_set, log_*) takes ownership of it and frees it, as Extism's do.
 */
export class ExtismKernel {
  readonly #io: ExtismIo;
  readonly #arena: ExtismArena;
  // Per call.
  #input: Uint8Array = NO_INPUT;
  /** A view of the input for input_load_u64, made when first needed (most calls read their input otherwise). */
  #inputView: DataView | undefined;
  #inputBlock: Block | undefined;
  /** Freed, or forgotten by reset: input_length answers 0, as Extism's kernel does. */
  #inputGone = false;
  #output: { block: Block; at: number; length: number } | undefined;
  #error: { block: Block; length: number } | undefined;
  // Per instance.
  readonly #vars = new Map<string, Uint8Array>();
  #varBytes = 0;

  constructor(io: ExtismIo) {
    this.#io = io;
    this.#arena = new ExtismArena(io.pluginId, io.limits.memoryMb * 1024 * 1024, io.charge);
  }

  /** A call starts: `input` is its input; no block, output or error is left from before. */
  begin(input: Uint8Array): void {
    this.#reset();
    this.#input = input;
    this.#inputView = undefined;
    this.#inputGone = false;
  }

  /**
   * The guest returned: the call's output (what output_set named, read now, as Extism reads it after the call)
   * and its error_set message, if any (escaped, at most MAX_ERROR_MESSAGE_BYTES of it); then every block is freed.
   */
  finish(): { output: Uint8Array | undefined; error: string | undefined } {
    try {
      const o = this.#output;
      if (o !== undefined && !o.block.live) {
        throw this.#arena.outOfBounds(
          `set its output to the memory block at ${o.block.start}, then freed it before returning`,
        );
      }
      const output = o === undefined ? undefined : this.#arena.bytes.slice(o.at, o.at + o.length);
      const e = this.#error;
      const at = e?.block.start ?? 0;
      const error =
        e?.block.live === true && e.length > 0
          ? escapeUnprintable(lenient.decode(this.#arena.bytes.subarray(at, at + e.length)))
          : undefined;
      return { output, error };
    } finally {
      this.#reset();
      this.#input = NO_INPUT;
    }
  }

  /** The `extism:host/env` functions, unguarded (the runtime puts each behind its guard). */
  imports(): Record<keyof typeof EXTISM_IMPORTS, (...args: never[]) => unknown> {
    const arena = this.#arena;
    const io = this.#io;
    return {
      alloc: (n: bigint) => BigInt(arena.alloc(Number(n))?.start ?? 0),
      free: (h: bigint) => this.#free(Number(h)),
      length: (h: bigint) => BigInt(arena.blockAt(Number(h))?.length ?? 0),
      length_unsafe: (h: bigint) => BigInt(arena.blockAt(Number(h))?.length ?? 0),
      load_u8: (p: bigint) => arena.bytes[arena.at(p, 1, 'load_u8')],
      load_u64: (p: bigint) => arena.view.getBigUint64(arena.at(p, 8, 'load_u64'), true),
      store_u8: (p: bigint, value: number) => {
        arena.bytes[arena.at(p, 1, 'store_u8')] = value;
      },
      store_u64: (p: bigint, value: bigint) =>
        arena.view.setBigUint64(arena.at(p, 8, 'store_u64'), value, true),
      input_offset: () => BigInt(this.#inputOffset()),
      input_length: () => BigInt(this.#inputGone ? 0 : this.#input.length),
      input_load_u8: (offset: bigint) => this.#input[this.#inputAt(offset, 1, 'input_load_u8')],
      input_load_u64: (offset: bigint) =>
        this.#inputDataView().getBigUint64(this.#inputAt(offset, 8, 'input_load_u64'), true),
      output_set: (p: bigint, length: bigint) => this.#outputSet(Number(p), Number(length)),
      error_set: (h: bigint) => this.#errorSet(Number(h)),
      error_get: () => BigInt(this.#error?.block.live === true ? this.#error.block.start : 0),
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
      memory_bytes: () => BigInt(arena.size),
    };
  }

  /** Every block freed; the input block, output and error forgotten. */
  #reset(): void {
    this.#arena.reset();
    this.#inputBlock = undefined;
    this.#output = undefined;
    this.#error = undefined;
  }

  #free(at: number): void {
    const block = this.#arena.free(at);
    if (block !== undefined && block === this.#inputBlock) this.#inputGone = true;
  }

  // --- input, output, error ----------------------------------------------------------------------------

  /** The input as a block, made on first use (most plugins read it with input_load_*, which copy nothing). */
  #inputOffset(): number {
    if (this.#inputGone) return 0;
    if (this.#inputBlock === undefined) {
      const start = this.#arena.give(this.#input);
      if (start === 0) return 0;
      this.#inputBlock = this.#arena.blockAt(start);
    }
    return this.#inputBlock?.start ?? 0;
  }

  #inputDataView(): DataView {
    const input = this.#input;
    this.#inputView ??= new DataView(input.buffer, input.byteOffset, input.byteLength);
    return this.#inputView;
  }

  #inputAt(offset: bigint, n: number, what: string): number {
    this.#io.charge(n);
    const o = Number(offset);
    const length = this.#inputGone ? 0 : this.#input.length;
    if (!(o >= 0 && o + n <= length)) {
      throw this.#arena.outOfBounds(
        `passed [${offset}, ${offset + BigInt(n)}) to ${what}; its input is ${length} bytes`,
      );
    }
    return o;
  }

  #outputSet(p: number, length: number): void {
    if (!(length >= 0)) throw this.#arena.outOfBounds(`passed a negative length (${length}) to output_set`);
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
    const block = this.#arena.containing(p, length);
    if (block === undefined) {
      throw this.#arena.outOfBounds(
        `passed [${p}, ${p + length}) to output_set, outside every live memory block`,
      );
    }
    this.#io.charge(length); // the copy made when the call ends
    this.#output = { block, at: p, length };
  }

  #errorSet(at: number): void {
    if (at === 0) {
      this.#error = undefined;
      return;
    }
    const block = this.#arena.handle(at, 'error_set');
    // Only the message's first MAX_ERROR_MESSAGE_BYTES are kept (read when the call ends).
    this.#error = { block, length: this.#arena.read(block, MAX_ERROR_MESSAGE_BYTES).length };
  }

  // --- configuration, variables, log -------------------------------------------------------------------

  /** A key block's bytes, copied (undefined when over `max`: not read), and the block freed. */
  #key(at: number, what: string, max: number): Uint8Array | undefined {
    const block = this.#arena.handle(at, what);
    const key = block.length > max ? undefined : this.#arena.read(block).slice();
    this.#free(at); // the function takes ownership of the handle, as Extism's do
    return key;
  }

  #configGet(at: number): number {
    const key = this.#key(at, 'config_get', MAX_KEY_BYTES);
    const pluginId = this.#io.pluginId;
    if (key === undefined) {
      throw new ReedError(
        'argument_too_large',
        `plugin "${pluginId}" passed config_get a key over ${MAX_KEY_BYTES} bytes`,
        { pluginId },
      );
    }
    let name: string;
    try {
      name = strict.decode(key);
    } catch {
      throw new ReedError(
        'invalid_argument',
        `plugin "${pluginId}" passed config_get a key that is not valid UTF-8`,
        {
          pluginId,
        },
      );
    }
    const json = this.#io.config(name);
    if (json === undefined) return 0;
    // Strings as they are; other values (numbers, booleans, tables, arrays) as their JSON text.
    const value = json.startsWith('"') ? (JSON.parse(json) as string) : json;
    return this.#arena.give(encoder.encode(value));
  }

  #varGet(at: number): number {
    const key = this.#key(at, 'var_get', this.#io.limits.extismVarBytes);
    const value = key === undefined ? undefined : this.#vars.get(binaryKey(key));
    return value === undefined ? 0 : this.#arena.give(value);
  }

  #varSet(keyAt: number, valueAt: number): void {
    const quota = this.#io.limits.extismVarBytes;
    const keyBlock = this.#arena.handle(keyAt, 'var_set');
    const valueBlock = valueAt === 0 ? undefined : this.#arena.handle(valueAt, 'var_set');
    const name = binaryKey(this.#arena.read(keyBlock, quota + 1));
    const old = this.#vars.get(name);
    const oldBytes = old === undefined ? 0 : name.length + old.length + VAR_OVERHEAD_BYTES;
    if (valueBlock === undefined) {
      this.#vars.delete(name);
      this.#varBytes -= oldBytes;
    } else {
      const bytes = keyBlock.length + valueBlock.length + VAR_OVERHEAD_BYTES;
      const total = this.#varBytes - oldBytes + bytes;
      if (total > quota) {
        throw new ReedError(
          'extism_var_quota_exceeded',
          `plugin "${this.#io.pluginId}" would hold ${total} bytes of Extism variables, more than ${quota} (limits.extism_var_bytes, ${VAR_OVERHEAD_BYTES} bytes counted per variable)`,
          { pluginId: this.#io.pluginId },
        );
      }
      this.#vars.set(name, this.#arena.read(valueBlock).slice());
      this.#varBytes = total;
    }
    this.#free(keyAt);
    if (valueAt !== keyAt) this.#free(valueAt);
  }

  #log(fn: keyof typeof LOG_LEVELS, at: number): void {
    if (at === 0) return;
    const [extismLevel, level] = LOG_LEVELS[fn];
    const block = this.#arena.handle(at, fn);
    // Below the host's level, Extism drops a line unread; so do we. Only what the log keeps is decoded.
    if (extismLevel >= this.#io.logLevel) {
      this.#io.log(level, lenient.decode(this.#arena.read(block, this.#io.limits.logLineBytes + 4)));
    }
    this.#free(at);
  }
}

/** A variable's name as a string that keeps its bytes as they are (one character per byte). */
function binaryKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
