import { ReedError } from '../errors.js';

/**
 * WASI arguments and environment for one call of a WASI command (`reed-plugins call --arg/--env`, the API's `arg` and
 * `env` query parameters, `PluginHost.call`'s `wasi` option, the runner protocol's Call frame). `args` come after the
 * manifest's `[wasi] args` (argv[0] stays the plugin id); `env` is merged over the manifest's `[wasi] env`. Never the
 * host's environment.
 */
export interface CallWasi {
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
}

/** The most arguments one call may add. */
export const MAX_CALL_ARGS = 256;
/** The most environment variables one call may set. */
export const MAX_CALL_ENV = 256;
/** The most UTF-8 bytes one call's arguments, variable names and values may hold together. */
export const MAX_CALL_WASI_BYTES = 64 * 1024;
/** An environment variable's name: the manifest's `[wasi] env` rule. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `value` checked as a call's WASI arguments and environment, from whatever side it came (a caller, a URL, a frame):
 * an object with at most `args` (strings) and `env` (string values under names like the manifest's), without NUL
 * bytes (C strings end there), within MAX_CALL_ARGS, MAX_CALL_ENV and MAX_CALL_WASI_BYTES. Counts are checked
 * before anything is walked. Returns undefined when it asks for nothing; throws `wasi_args_invalid` or
 * `wasi_args_too_large` naming the plugin.
 */
export function checkCallWasi(pluginId: string, value: unknown): CallWasi | undefined {
  // Most calls carry none: answered here, since checkWasiObject's closures make V8 allocate a context on entry.
  if (value === undefined || value === null) return undefined;
  return checkWasiObject(pluginId, value);
}

/** checkCallWasi's work for a value that is there. */
function checkWasiObject(pluginId: string, value: unknown): CallWasi | undefined {
  const invalid = (why: string) =>
    new ReedError('wasi_args_invalid', `per-call WASI arguments for plugin "${pluginId}": ${why}`, {
      pluginId,
    });
  const tooLarge = (why: string) =>
    new ReedError(
      'wasi_args_too_large',
      `per-call WASI arguments for plugin "${pluginId}": ${why} (at most ${MAX_CALL_ARGS} args, ${MAX_CALL_ENV} variables and ${MAX_CALL_WASI_BYTES} bytes in all)`,
      { pluginId },
    );
  if (typeof value !== 'object' || Array.isArray(value))
    throw invalid('expected an object with args and env');
  const { args, env, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw invalid(`unknown field "${String(extra[0]).slice(0, 64)}"`);
  let bytes = 0;
  const count = (text: string, what: string) => {
    if (text.includes('\0')) throw invalid(`${what} holds a NUL byte`);
    bytes += Buffer.byteLength(text);
    if (bytes > MAX_CALL_WASI_BYTES) throw tooLarge(`more than ${MAX_CALL_WASI_BYTES} bytes`);
  };
  const out: { args?: string[]; env?: Record<string, string> } = {};
  if (args !== undefined) {
    if (!Array.isArray(args)) throw invalid('args is not a list of strings');
    if (args.length > MAX_CALL_ARGS) throw tooLarge(`${args.length} args`);
    args.forEach((a: unknown, i) => {
      if (typeof a !== 'string') throw invalid(`args[${i}] is not a string`);
      count(a, `args[${i}]`);
    });
    if (args.length > 0) out.args = [...(args as string[])];
  }
  if (env !== undefined) {
    if (env === null || typeof env !== 'object' || Array.isArray(env))
      throw invalid('env is not a table of strings');
    const names = Object.keys(env);
    if (names.length > MAX_CALL_ENV) throw tooLarge(`${names.length} variables`);
    const copy: Record<string, string> = {};
    for (const name of names) {
      const v = (env as Record<string, unknown>)[name];
      if (!ENV_NAME.test(name))
        throw invalid(`the variable name "${name.slice(0, 64)}" is not [A-Za-z_][A-Za-z0-9_]*`);
      if (typeof v !== 'string') throw invalid(`env.${name} is not a string`);
      count(name, `env.${name}`);
      count(v, `env.${name}`);
      Object.defineProperty(copy, name, { value: v, enumerable: true, writable: true, configurable: true });
    }
    if (names.length > 0) out.env = copy;
  }
  return out.args === undefined && out.env === undefined ? undefined : out;
}

/** The manifest's WASI arguments and environment with one call's appended and merged over them. */
export function withCallWasi(
  base: { readonly args: readonly string[]; readonly env: Readonly<Record<string, string>> },
  call: CallWasi | undefined,
): { args: readonly string[]; env: Readonly<Record<string, string>> } {
  if (call === undefined) return base;
  return { args: [...base.args, ...(call.args ?? [])], env: { ...base.env, ...call.env } };
}

/** The error a plugin that is not a WASI command gives when a call brings WASI arguments or environment. */
export function notACommand(pluginId: string, what: string): ReedError {
  return new ReedError(
    'wasi_args_not_command',
    `plugin "${pluginId}" is ${what}, not a WASI command (a module exporting _start): per-call WASI args and env apply to commands only, which start afresh for each call; set a function plugin's in its manifest's [wasi]`,
    { pluginId },
  );
}
