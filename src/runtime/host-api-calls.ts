// Calling the host API from a row of its table (host-api.ts), as the layers that marshal from the table do (the
// WASM imports, the native callbacks, the host's checks, the wire, the runner): argument caps, answers in ABI
// terms, and the one place a method is called by name.
import { ReedError } from '../errors.js';
import { stringifyJson } from '../json.js';
import {
  type Answer,
  HOST_FUNCTIONS,
  type HostApi,
  type HostApiName,
  type HostArg,
  NOT_FOUND,
  type Param,
} from './host-api.js';

/**
 * Calls `name` on `host` with arguments already checked against its row: the one place a method is called by
 * name, for the layers that marshal from the table (the WASM imports, the native callbacks, the wire).
 */
export function invokeHostApi(host: HostApi, name: HostApiName, args: readonly HostArg[]): unknown {
  return (host[name] as (...a: readonly HostArg[]) => unknown)(...args);
}

/** Whether the answer is written into the plugin's buffer (the last parameter). */
export function fillsBuffer(answer: Answer): boolean {
  return answer === 'bytes' || answer === 'text' || answer === 'list';
}

/** A method's result as the data an ABI copies into the plugin's buffer (undefined: NOT_FOUND). */
export function bufferData(answer: Answer, result: unknown): Uint8Array | string | undefined {
  if (answer === 'list') return (result as string[]).map((item) => `${item}\0`).join('');
  return result as Uint8Array | string | undefined;
}

/** A method's result as the status an ABI returns, for answers that fill no buffer. */
export function answerStatus(answer: Answer, result: unknown): number {
  return answer === 'found' && result !== true ? NOT_FOUND : 0;
}

/** Refuses an argument of `byteLength` above its parameter's cap. */
export function checkArgumentSize(pluginId: string, param: Param, byteLength: number): void {
  if (param.max === undefined || byteLength <= param.max) return;
  throw new ReedError(
    'argument_too_large',
    `plugin "${pluginId}" passed ${param.what ?? param.name} of ${byteLength} bytes; the host takes at most ${param.max}`,
    { pluginId },
  );
}

/**
 * Refuses any argument above its cap (the length test first: a string's UTF-8 length is at least its length,
 * so a huge string is never encoded to be measured).
 */
export function checkArgumentSizes(pluginId: string, name: HostApiName, args: readonly HostArg[]): void {
  HOST_FUNCTIONS[name].params
    .filter((param) => param.kind !== 'buffer')
    .forEach((param: Param, i) => {
      const arg = args[i];
      if (param.max === undefined || arg === undefined || typeof arg === 'number') return;
      if (typeof arg !== 'string') checkArgumentSize(pluginId, param, arg.length);
      else if (arg.length > param.max || Buffer.byteLength(arg) > param.max)
        checkArgumentSize(pluginId, param, Buffer.byteLength(arg));
    });
}

/**
 * config_get's answer, wherever it is given (the host in mode none, the runner otherwise): the plugin's
 * `[configuration]` value at `key` as JSON (BigInts as decimal strings), `""` for the whole table.
 */
export function configurationJson(configuration: Record<string, unknown>, key: string): string | undefined {
  if (key === '') return stringifyJson(configuration);
  return Object.hasOwn(configuration, key) ? stringifyJson(configuration[key]) : undefined;
}
