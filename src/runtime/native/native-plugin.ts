// Longer than most files: one class owns a library's whole life and its host callbacks, because the per-call
// state they share (the plugin's error, a violation that fails the call, the deadline) must stay private to it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import semver from 'semver';
import { ReedError } from '../../errors.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { escapeUnprintable } from '../../safe-text.js';
import { type CallWasi, notACommand } from '../call-wasi.js';
import {
  HOST_FUNCTIONS,
  type HostApi,
  type HostApiName,
  type HostArg,
  type HostFunction,
  type NativeName,
  NOT_FOUND,
  TABLE_MARSHALLED_NAMES,
} from '../host-api.js';
import {
  answerStatus,
  bufferData,
  checkArgumentSize,
  fillsBuffer,
  invokeHostApi,
} from '../host-api-calls.js';
import { type CallResult, checkCallable, type PluginRuntime } from '../runtime.js';
import * as T from './koffi-types.js';

const E_PERMISSION = -2;
const E_QUOTA = -3;
const E_INVALID = -4;
const E_HOST = -5;
const strict = new TextDecoder('utf-8', { fatal: true });
const lenient = new TextDecoder('utf-8');

export interface NativePluginOptions {
  pluginId: string;
  /** The library bytes that were checked (and, where required, verified against the signature). */
  bytes: Uint8Array;
  /** A private directory for the copy that is loaded; created with mode 0700. */
  privateDir: string;
  host: HostApi;
  limits: ResolvedLimits;
  hostApiVersion: string;
  /** Told when the library's API minor is newer than the host's. */
  warn?: (message: string) => void;
}

type Native = (...args: unknown[]) => unknown;

/**
 * A native plugin through the C ABI in include/reed_plugin.h. What is loaded is a private copy of exactly the
 * bytes that were checked, so the file cannot change between check and dlopen. In mode `none` this runs in
 * the host process with the host's full rights: a crash or `exit()` takes the host down. That is why the host
 * runs native plugins in-process only when its policy trusts them, and why process mode exists.
 */
export class NativePlugin implements PluginRuntime {
  readonly functions: readonly string[];
  readonly #o: NativePluginOptions;
  readonly #lib: LibraryHandle;
  readonly #self: unknown;
  readonly #call: Native;
  readonly #init: Native;
  readonly #deactivate: Native;
  readonly #freeOutput: Native;
  readonly #destroy: Native;
  readonly #callbacks: ReturnType<typeof koffi.register>[] = [];
  #hostStruct: unknown;
  #violation: ReedError | undefined;
  #error: { code: string; message: string } | undefined;
  #deadline = 0;
  #destroyed = false;

  constructor(options: NativePluginOptions) {
    this.#o = options;
    const id = options.pluginId;
    const at = { pluginId: id };
    this.#lib = loadPrivateCopy(options.bytes, options.privateDir, id);
    try {
      const symbol = (signature: string, name: string) => {
        try {
          return this.#lib.func(signature) as Native;
        } catch (error) {
          throw new ReedError('native_symbol_missing', `native plugin "${id}" does not export ${name}`, {
            ...at,
            cause: error,
          });
        }
      };
      const apiVersion = symbol('const char *_reed_plugin_api_version(void)', '_reed_plugin_api_version')() as
        | string
        | null;
      const theirs = semver.parse(apiVersion ?? '');
      const ours = semver.parse(options.hostApiVersion);
      if (theirs === null || ours === null || theirs.major !== ours.major) {
        throw new ReedError(
          'api_version_mismatch',
          `native plugin "${id}" was built for plugin API ${JSON.stringify(apiVersion)}, but this host provides ${options.hostApiVersion}`,
          at,
        );
      }
      if (theirs.minor > ours.minor)
        options.warn?.(`native plugin "${id}" was built for a newer plugin API (${theirs.version})`);
      const create = symbol('void *_reed_plugin_create(void)', '_reed_plugin_create');
      const pointer = create();
      if (pointer === null)
        throw new ReedError('init_failed', `native plugin "${id}": _reed_plugin_create returned NULL`, at);
      const plugin = koffi.decode(pointer, T.Plugin) as Record<string, unknown>;
      if (plugin.abi !== T.NATIVE_ABI) {
        throw new ReedError(
          'api_version_mismatch',
          `native plugin "${id}" uses native ABI ${String(plugin.abi)}; this host speaks ${T.NATIVE_ABI}`,
          at,
        );
      }
      const fn = (name: string, proto: TypeObject) => {
        if (plugin[name] === null)
          throw new ReedError('native_symbol_missing', `native plugin "${id}" has no ${name} function`, at);
        return koffi.decode(plugin[name], proto) as Native;
      };
      this.#self = plugin.self;
      this.#init = fn('init', T.InitFn);
      this.#call = fn('call', T.CallFn);
      this.#deactivate = fn('deactivate', T.SelfFn);
      this.#freeOutput = fn('free_output', T.FreeOutputFn);
      this.#destroy = fn('destroy', T.DestroyFn);
      this.functions = String(plugin.functions ?? '')
        .split(' ')
        .filter((name) => name.length > 0);
    } catch (error) {
      this.#lib.unload();
      throw error;
    }
  }

  get #id(): string {
    return this.#o.pluginId;
  }

  init(): void {
    this.#hostStruct = koffi.alloc(T.HostApi, 1);
    koffi.encode(this.#hostStruct, T.HostApi, this.#hostCallbacks());
    this.#begin(0);
    const status = this.#init(this.#self, this.#hostStruct) as number;
    const failure =
      this.#violation ??
      (status !== 0 ? this.#pluginError(`init returned status ${status}`, status) : undefined);
    if (failure !== undefined) {
      this.deactivate();
      throw new ReedError(
        'init_failed',
        `init of native plugin "${this.#id}" failed: ${failure.code}: ${failure.message}`,
        {
          pluginId: this.#id,
          cause: failure,
          details: { causeCode: failure.code },
        },
      );
    }
  }

  call(fn: string, input: Uint8Array, deadline = 0, wasi?: CallWasi): CallResult {
    checkCallable(this.#id, this.#destroyed, this.functions, fn);
    if (wasi !== undefined) throw notACommand(this.#id, 'a native plugin');
    this.#begin(deadline);
    const out: { data?: unknown; len?: number } = {};
    const status = this.#call(this.#self, fn, input, input.length, out) as number;
    const output = this.#takeOutput(out);
    if (this.#violation !== undefined) throw this.#violation;
    if (status !== 0) throw this.#pluginError(`function "${fn}" returned status ${status}`, status);
    if (deadline !== 0 && performance.now() > deadline) {
      throw new ReedError(
        'call_timeout',
        `call to plugin "${this.#id}" ran past its deadline (limits.call_timeout_ms = ${this.#o.limits.callTimeoutMs}); in mode none a native call cannot be interrupted`,
        {
          pluginId: this.#id,
        },
      );
    }
    return { output, fuelConsumed: 0 };
  }

  deactivate(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      if (this.#hostStruct !== undefined) this.#deactivate(this.#self);
    } finally {
      this.#destroy(this.#self);
      for (const cb of this.#callbacks) koffi.unregister(cb);
      if (this.#hostStruct !== undefined) koffi.free(this.#hostStruct);
      this.#lib.unload();
    }
  }

  #begin(deadline: number): void {
    this.#violation = undefined;
    this.#error = undefined;
    this.#deadline = deadline;
  }

  /** Copies the plugin's output and hands the buffer back to it; refuses NULL with a length, or too much. */
  #takeOutput(out: { data?: unknown; len?: number }): Uint8Array {
    const len = Number(out.len ?? 0);
    const data = out.data ?? null;
    if (data === null) {
      if (len !== 0) {
        throw new ReedError(
          'native_bad_output',
          `native plugin "${this.#id}" returned a NULL output buffer of length ${len}`,
          { pluginId: this.#id },
        );
      }
      return new Uint8Array(0);
    }
    try {
      if (len > this.#o.limits.maxOutputBytes) {
        throw new ReedError(
          'output_too_large',
          `plugin "${this.#id}" returned ${len} bytes of output, above limits.max_output_bytes = ${this.#o.limits.maxOutputBytes}`,
          {
            pluginId: this.#id,
          },
        );
      }
      return len === 0 ? new Uint8Array(0) : new Uint8Array(koffi.view(data, len)).slice();
    } finally {
      this.#freeOutput(this.#self, data, len);
    }
  }

  #pluginError(fallback: string, status: number): ReedError {
    const e = this.#error;
    return new ReedError(
      'plugin_error',
      `plugin "${this.#id}": ${e === undefined ? fallback : `${e.code}: ${e.message}`}`,
      {
        pluginId: this.#id,
        details: { ...(e === undefined ? {} : { pluginCode: e.code }), status },
      },
    );
  }

  // --- host callbacks: the same HostApi (and so the same checks) as WASM -------------------------

  /** reed_host_api's fields: log and error_set by hand, the others from their rows of the host API table. */
  #hostCallbacks(): Record<string, unknown> {
    const callbacks: Record<string, unknown> = { abi: T.NATIVE_ABI, ctx: null };
    const register = (name: NativeName, fn: (...args: never[]) => unknown) => {
      const cb = koffi.register(fn as (...args: unknown[]) => unknown, koffi.pointer(T.CALLBACKS[name]));
      this.#callbacks.push(cb);
      callbacks[name] = cb;
    };
    register('log', (_ctx: unknown, level: number, msg: unknown, len: number) => {
      this.#guard(() => {
        this.#o.host.log(level, lenient.decode(this.#view(msg, len)));
        return 0;
      });
    });
    register('error_set', (_ctx: unknown, code: unknown, codeLen: number, msg: unknown, msgLen: number) => {
      this.#guard(() => {
        // A plugin's error is shown wherever errors are (terminals, log viewers): escaped as it arrives.
        this.#error = {
          code: escapeUnprintable(lenient.decode(this.#view(code, Math.min(Number(codeLen), 128)))),
          message: escapeUnprintable(lenient.decode(this.#view(msg, Math.min(Number(msgLen), 4096)))),
        };
        return 0;
      });
    });
    for (const name of TABLE_MARSHALLED_NAMES) {
      const row: HostFunction = HOST_FUNCTIONS[name];
      if (T.isNativeName(name))
        register(name, (_ctx: unknown, ...raw: unknown[]) =>
          this.#guard(() => this.#tableCall(name, row, raw)),
        );
    }
    return callbacks;
  }

  /**
   * A callback marshalled from its row: each argument's size checked against its cap before it is read, text
   * decoded (strict UTF-8), bytes viewed; the answer copied into the plugin's buffer or returned as a status.
   */
  #tableCall(name: HostApiName, row: HostFunction, raw: unknown[]): number {
    const args: HostArg[] = [];
    let buffer: { ptr: unknown; cap: number } = { ptr: null, cap: 0 };
    let at = 0;
    for (const param of row.params) {
      const [a, b] = [raw[at], Number(raw[at + 1] ?? 0)];
      at += param.kind === 'i32' ? 1 : 2;
      if (param.kind === 'i32') args.push(Number(a));
      else if (param.kind === 'buffer') buffer = { ptr: a, cap: b };
      else {
        checkArgumentSize(this.#id, param, b);
        args.push(param.kind === 'text' ? this.#text(a, b, param.what ?? param.name) : this.#view(a, b));
      }
    }
    const result = invokeHostApi(this.#o.host, name, args);
    if (!fillsBuffer(row.answer)) return answerStatus(row.answer, result);
    const data = bufferData(row.answer, result);
    if (data === undefined) return NOT_FOUND;
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    const room = Math.min(buffer.cap, payload.length);
    if (room > 0) new Uint8Array(koffi.view(buffer.ptr, room)).set(payload.subarray(0, room));
    return payload.length;
  }

  /** The plugin's bytes at `ptr`, viewed in place (callbacks never keep them). */
  #view(ptr: unknown, len: number | bigint): Uint8Array {
    const n = Number(len);
    if (n === 0) return new Uint8Array(0);
    if (ptr === null)
      throw new ReedError('invalid_argument', `plugin "${this.#id}" passed NULL with length ${n}`);
    return new Uint8Array(koffi.view(ptr, n));
  }

  #text(ptr: unknown, len: number, what: string): string {
    try {
      return strict.decode(this.#view(ptr, len));
    } catch (error) {
      if (error instanceof ReedError) throw error;
      throw new ReedError('invalid_argument', `plugin "${this.#id}" passed ${what} that is not valid UTF-8`);
    }
  }

  /**
   * Every callback runs in here and catches everything: an exception must never unwind through C frames. A
   * permission, quota or deadline failure also fails the current call, whatever the plugin returns.
   */
  #guard(run: () => number): number {
    try {
      if (this.#deadline !== 0 && performance.now() > this.#deadline) {
        throw new ReedError('call_timeout', `call to plugin "${this.#id}" ran past its deadline`, {
          pluginId: this.#id,
        });
      }
      return run();
    } catch (error) {
      const typed =
        error instanceof ReedError
          ? error
          : new ReedError('invalid_argument', String((error as Error)?.message ?? error));
      if (
        typed.code === 'permission_denied' ||
        typed.code === 'storage_quota_exceeded' ||
        typed.code === 'call_timeout'
      ) {
        this.#violation ??= typed;
      }
      return typed.code === 'permission_denied'
        ? E_PERMISSION
        : typed.code === 'storage_quota_exceeded'
          ? E_QUOTA
          : typed.code === 'invalid_argument'
            ? E_INVALID
            : E_HOST;
    }
  }
}

/** Writes the checked bytes to a fresh private directory, loads that copy, and removes it at once. */
function loadPrivateCopy(bytes: Uint8Array, privateDir: string, pluginId: string): LibraryHandle {
  mkdirSync(privateDir, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(join(privateDir, 'native-'));
  const file = join(dir, 'plugin.so');
  try {
    writeFileSync(file, bytes, { mode: 0o500 });
    return koffi.load(file);
  } catch (error) {
    throw new ReedError(
      'native_invalid_library',
      `native plugin "${pluginId}" could not be loaded: ${(error as Error).message}`,
      {
        pluginId,
        cause: error,
      },
    );
  } finally {
    // The mapping stays valid after the file is gone; nothing can swap it from now on.
    rmSync(dir, { recursive: true, force: true });
  }
}

export { E_HOST, E_INVALID, E_PERMISSION, E_QUOTA, NOT_FOUND };
