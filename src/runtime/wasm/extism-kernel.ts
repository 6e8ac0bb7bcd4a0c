import { ReedError } from '../../errors.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { escapeUnprintable } from '../../safe-text.js';
import { MAX_KEY_BYTES } from '../host-api.js';
import {
  EXTISM_FUEL_PER_CALL,
  FUEL_PER_ERROR_BYTE,
  FUEL_PER_KEPT_BYTE,
  MAX_ERROR_MESSAGE_BYTES,
} from './abi.js';
import type { EXTISM_IMPORTS } from './extism.js';
import { type Block, ExtismArena, LITTLE_ENDIAN } from './extism-arena.js';
import type { ExtismVars } from './extism-vars.js';

/** What the kernel needs of the runtime that runs the plugin (wasm-plugin.ts). */
export interface ExtismIo {
  readonly pluginId: string;
  readonly limits: Pick<ResolvedLimits, 'memoryMb' | 'maxOutputBytes' | 'logLineBytes'>;
  /** The host's log level in Extism's numbering (extismLogLevel): get_log_level, and lines below it are dropped. */
  readonly logLevel: number;
  /** Charges fuel for work about to be done; throws (fuel, deadline) when the call may not do it. */
  charge(fuel: number): void;
  /**
   * What the runtime's guard does before an import runs, for the imports that run without it (SELF_GUARDED):
   * fails at once after a fatal error, charges `fuel` (the import's price included: EXTISM_FUEL_PER_CALL, or
   * FUEL_PER_HOST_CALL for a load or store), and a
   * failure there ends the run as the guard's would (no `catch_all` in the guest can swallow it). The arena's
   * loads and stores pay what they owe through it too.
   */
  enter(fuel: number): void;
  /**
   * A log line to the plugin's log at our level (0 debug .. 3 error), rate-capped and charged by the runtime; bytes
   * are decoded (leniently) only once the rate cap admits the line, before this returns.
   */
  log(level: number, text: string | Uint8Array): void;
  /** The plugin's `[configuration]` value at `key` as Extism answers it (extismConfigValue), or undefined. */
  config(key: string): Uint8Array | undefined;
  /** The plugin's variables: the runtime's, kept across instances. */
  readonly vars: ExtismVars;
}
/**
 * A configuration value (its JSON, as the host API's config_get answers it) as Extism's config_get answers it:
 * strings as they are; other values (numbers, booleans, tables, arrays) as their JSON text.
 */
export function extismConfigValue(json: string): Uint8Array {
  return encoder.encode(json.startsWith('"') ? (JSON.parse(json) as string) : json);
}

/** Extism's log functions: Extism's level (0 trace .. 4 error), and ours (0 debug, 1 info, 2 warn, 3 error). */
const LOG_LEVELS = {
  log_trace: [0, 0],
  log_debug: [1, 0],
  log_info: [2, 1],
  log_warn: [3, 2],
  log_error: [4, 3],
} as const;

/**
 * The imports the runtime calls without its generic guard, because they do its work themselves: the loads and
 * stores (WebAssembly: extism-fast.wat, paying through ExtismIo.enter), and the others here, which call
 * ExtismIo.enter first and cannot throw after it. A plugin makes them by the dozen per call; a generic wrapper
 * calling every import through one call site costs them about as much as their own work.
 */
export const SELF_GUARDED: ReadonlySet<string> = new Set([
  'load_u8',
  'load_u64',
  'store_u8',
  'store_u64',
  'input_load_u8',
  'input_load_u64',
  'input_length',
  'length',
  'length_unsafe',
  'error_get',
  'get_log_level',
  'memory_bytes',
]);

const lenient = new TextDecoder('utf-8');
const strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
const NO_INPUT = new Uint8Array(0);

/**
 * Our Extism kernel for one instance (docs/ABI-wasm.md, "Extism plugins"), written from Extism's documented ABI:
 * the `extism:host/env` functions over an arena of memory blocks (extism-arena.ts), the call's input, output and
 * error, the plugin's configuration, its variables (the runtime's: extism-vars.ts) and its log. Blocks live for a
 * call (every one is freed, and the arena zeroed, when it ends). Where a plugin can observe it, it answers as
 * Extism's kernel (with its bounds checks) does: a load outside the arena or past the input's end answers 0, a
 * store outside the arena does nothing, output_set and error_set outside it are ignored, length of what is not a
 * block is 0; it traps only where a limit is hit or a host function is given a handle that is not a block (as
 * Extism's host functions fail). A function that takes a block (config_get, var_get, var_set, log_*) takes
 * ownership of it and frees it, as Extism's do.
 */
export class ExtismKernel {
  readonly #io: ExtismIo;
  readonly #arena: ExtismArena;
  // Per call.
  #input: Uint8Array = NO_INPUT;
  /** Views of the input for input_load_u64, made when first needed (most calls read their input otherwise). */
  #inputView: DataView | undefined;
  #inputWords: BigUint64Array | undefined;
  #inputBlock: Block | undefined;
  /** Freed, or forgotten by reset: input_length answers 0, as Extism's kernel does. */
  #inputGone = false;
  #output: { at: number; length: number } | undefined;
  /** What error_set named (0: none). */
  #error = 0;
  /** The last call's finish ran: the arena and the call's state are as new. */
  #finished = true;

  constructor(io: ExtismIo) {
    this.#io = io;
    this.#arena = new ExtismArena(io.pluginId, io.limits.memoryMb * 1024 * 1024, io.charge, io.enter);
  }

  /** A call starts: `input` is its input; no block, output or error is left from before. */
  begin(input: Uint8Array): void {
    if (!this.#finished) this.#reset(); // finish already did
    this.#finished = false;
    this.#input = input;
    this.#inputView = undefined;
    this.#inputWords = undefined;
    this.#inputGone = false;
  }

  /**
   * The guest returned: the call's output (the bytes output_set named, read now, as Extism reads them after the
   * call, whatever became of the block) and its error, if error_set named one: the text of the block there
   * (escaped, at most MAX_ERROR_MESSAGE_BYTES of it; as Extism, none when it is no longer a block, and the call
   * still fails). Then every block is freed.
   */
  finish(): { output: Uint8Array | undefined; error: string | undefined } {
    try {
      const o = this.#output;
      // output_set checked the range against the extent, which only grows.
      const output = o === undefined ? undefined : this.#arena.bytes.slice(o.at, o.at + o.length);
      return { output, error: this.#error === 0 ? undefined : this.#errorText(this.#error) };
    } finally {
      this.#reset();
      this.#input = NO_INPUT;
      this.#finished = true;
    }
  }

  /**
   * The `extism:host/env` functions: those in SELF_GUARDED do the guard's work themselves (the arena's loads and
   * stores, WebAssembly, pay what they owe through `io.enter`; the others here call it first and cannot fail after
   * it); the runtime puts each of the others behind its guard.
   */
  imports(): Record<keyof typeof EXTISM_IMPORTS, (...args: never[]) => unknown> {
    const arena = this.#arena;
    const io = this.#io;
    const enter = io.enter;
    return {
      alloc: (n: bigint) => BigInt(arena.alloc(Number(n))?.start ?? 0),
      free: (h: bigint) => this.#free(Number(h)),
      length: (h: bigint) => {
        enter(EXTISM_FUEL_PER_CALL);
        return BigInt(arena.blockAt(Number(h))?.length ?? 0);
      },
      length_unsafe: (h: bigint) => {
        enter(EXTISM_FUEL_PER_CALL);
        return BigInt(arena.blockAt(Number(h))?.length ?? 0);
      },
      load_u8: arena.fast.load_u8,
      load_u64: arena.fast.load_u64,
      store_u8: arena.fast.store_u8,
      store_u64: arena.fast.store_u64,
      input_offset: () => BigInt(this.#inputOffset()),
      input_length: () => {
        enter(EXTISM_FUEL_PER_CALL);
        return BigInt(this.#inputGone ? 0 : this.#input.length);
      },
      // Past the input's end (or once it is gone), 0, as Extism's kernel answers: input_load_u64 wants all 8 bytes.
      input_load_u8: (offset: bigint) => {
        enter(EXTISM_FUEL_PER_CALL + 1);
        const o = Number(offset);
        return !this.#inputGone && o >= 0 && o < this.#input.length ? this.#input[o] : 0;
      },
      input_load_u64: (offset: bigint) => {
        enter(EXTISM_FUEL_PER_CALL + 8);
        const o = Number(offset);
        return !this.#inputGone && o >= 0 && o + 8 <= this.#input.length ? this.#inputU64(o) : 0n;
      },
      output_set: (p: bigint, length: bigint) => this.#outputSet(Number(p), Number(length)),
      error_set: (h: bigint) => this.#errorSet(Number(h)),
      error_get: () => {
        enter(EXTISM_FUEL_PER_CALL);
        return BigInt(this.#error);
      },
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
      get_log_level: () => {
        enter(EXTISM_FUEL_PER_CALL);
        return io.logLevel;
      },
      reset: () => {
        this.#reset();
        this.#inputGone = true;
      },
      memory_bytes: () => {
        enter(EXTISM_FUEL_PER_CALL);
        return BigInt(arena.size);
      },
    };
  }

  /** The fuel the arena's loads and stores owe, now the caller's to pay (the runtime, whenever it settles). */
  takeDebt(): number {
    return this.#arena.takeDebt();
  }

  /** Every block freed, the arena zeroed; the input block, output and error forgotten. */
  #reset(): void {
    this.#arena.reset();
    this.#inputBlock = undefined;
    this.#output = undefined;
    this.#error = 0;
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

  /** The input's u64 at `o` (inside it), through a BigUint64Array when both are 8-aligned, as the arena's. */
  #inputU64(o: number): bigint {
    const input = this.#input;
    if (LITTLE_ENDIAN && (o & 7) === 0 && input.byteOffset % 8 === 0 && o < 2 ** 32) {
      this.#inputWords ??= new BigUint64Array(input.buffer, input.byteOffset, Math.floor(input.length / 8));
      return this.#inputWords[o >>> 3] as bigint;
    }
    this.#inputView ??= new DataView(input.buffer, input.byteOffset, input.byteLength);
    return this.#inputView.getBigUint64(o, true);
  }

  /**
   * The output is `[p, p+length)` of the arena, read when the call ends. As in Extism's kernel, a range outside the
   * arena is ignored (the output stays as it was); one over limits.max_output_bytes is output_too_large.
   */
  #outputSet(p: number, length: number): void {
    if (!(length >= 0 && this.#arena.inside(p, length))) return;
    if (length > this.#io.limits.maxOutputBytes) {
      throw new ReedError(
        'output_too_large',
        `plugin "${this.#io.pluginId}" set an output of ${length} bytes, more than ${this.#io.limits.maxOutputBytes} (limits.max_output_bytes)`,
        { pluginId: this.#io.pluginId },
      );
    }
    this.#io.charge(length); // the copy made when the call ends
    this.#output = { at: p, length };
  }

  /** The error is what lies at `at` (0 clears it); as in Extism's kernel, an offset outside the arena is ignored. */
  #errorSet(at: number): void {
    if (at !== 0 && !this.#arena.inside(at, 1)) return;
    // The message is read when the call ends: its first MAX_ERROR_MESSAGE_BYTES are charged now.
    if (at !== 0)
      this.#io.charge(
        Math.min(this.#arena.blockAt(at)?.length ?? 0, MAX_ERROR_MESSAGE_BYTES) * FUEL_PER_ERROR_BYTE,
      );
    this.#error = at;
  }

  /** The error's text: the block at `at` (what Extism's runtime reads: length(at) bytes), or a note that none is. */
  #errorText(at: number): string {
    const block = this.#arena.blockAt(at);
    if (block === undefined || block.length === 0) {
      return `error_set named offset ${at}, not a memory block when the function returned (no message)`;
    }
    const end = at + Math.min(block.length, MAX_ERROR_MESSAGE_BYTES);
    return escapeUnprintable(lenient.decode(this.#arena.bytes.subarray(at, end)));
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
    const value = this.#io.config(name);
    return value === undefined ? 0 : this.#arena.give(value);
  }

  #varGet(at: number): number {
    const key = this.#key(at, 'var_get', MAX_KEY_BYTES);
    if (key === undefined) this.#nameTooLong('var_get');
    const value = this.#io.vars.get(key);
    return value === undefined ? 0 : this.#arena.give(value);
  }

  /**
   * A variable's name is a key like a storage or configuration key: at most MAX_KEY_BYTES. (V8 hashes a string
   * of 16,384 characters or more by its length alone: names as long as the variables' quota made every lookup
   * compare against every stored name, 7.9 ms of the host's thread for one var_get's 68K fuel; the seventh
   * review, session 22.)
   */
  #nameTooLong(what: string): never {
    const pluginId = this.#io.pluginId;
    throw new ReedError(
      'argument_too_large',
      `plugin "${pluginId}" passed ${what} a variable name over ${MAX_KEY_BYTES} bytes`,
      { pluginId },
    );
  }

  #varSet(keyAt: number, valueAt: number): void {
    const keyBlock = this.#arena.handle(keyAt, 'var_set');
    const valueBlock = valueAt === 0 ? undefined : this.#arena.handle(valueAt, 'var_set');
    if (keyBlock.length > MAX_KEY_BYTES) {
      this.#free(keyAt);
      if (valueAt !== keyAt) this.#free(valueAt);
      this.#nameTooLong('var_set');
    }
    const key = this.#arena.read(keyBlock);
    // The value is copied into fresh memory the variables keep (key and value, up to the quota).
    if (valueBlock !== undefined)
      this.#io.charge(Math.min(valueBlock.length, this.#io.vars.quota + 1) * FUEL_PER_KEPT_BYTE);
    this.#io.vars.set(key, valueBlock === undefined ? undefined : this.#arena.read(valueBlock));
    this.#free(keyAt);
    if (valueAt !== keyAt) this.#free(valueAt);
  }

  #log(fn: keyof typeof LOG_LEVELS, at: number): void {
    if (at === 0) return;
    const [extismLevel, level] = LOG_LEVELS[fn];
    // Below the host's level, Extism drops a line unread (a handle that is not a block included); so do we.
    if (extismLevel >= this.#io.logLevel) {
      const block = this.#arena.handle(at, fn);
      // Only what the log keeps is read, and decoded only if the rate cap lets the line through (ExtismIo.log).
      this.#io.log(level, this.#arena.read(block, this.#io.limits.logLineBytes + 4));
    }
    this.#free(at);
  }
}
