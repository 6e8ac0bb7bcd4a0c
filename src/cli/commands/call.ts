import { readFileSync } from 'node:fs';
import { isReedError } from '../../errors.js';
import { PluginHost } from '../../host/plugin-host.js';
import type { CallWasi } from '../../runtime/call-wasi.js';
import { escapeUnprintable } from '../../safe-text.js';
import { encodeOutput } from '../../server/call-route.js';
import {
  type Command,
  EXIT_OK,
  EXIT_PLUGIN_ERROR,
  HOST_OPTION_HELP,
  HOST_OPTIONS,
  hostConfigFrom,
  type ParsedValues,
  SANDBOX_OPTION_HELP,
  SANDBOX_OPTIONS,
  sandboxChoice,
  toJson,
  UsageError,
} from '../command.js';

export const callCommand: Command = {
  name: 'call',
  usage:
    'ID FUNCTION [--input TEXT | --input-file F] [--arg X]... [--env K=V]... [--mode MODE] [--runtime RUNTIME] [options]',
  summary: 'load one plugin (and its dependencies) and call one of its functions',
  options: {
    ...HOST_OPTIONS,
    input: { type: 'string' },
    'input-file': { type: 'string' },
    arg: { type: 'string', multiple: true },
    env: { type: 'string', multiple: true },
    ...SANDBOX_OPTIONS,
  },
  optionHelp: [
    ['--input TEXT', 'the call input (default: empty)'],
    ['--input-file F', 'read the call input from file F ("-" for standard input)'],
    [
      '--arg X',
      "a WASI command: append X to its arguments, after the manifest's (repeatable; --arg=-x for -x)",
    ],
    ['--env K=V', "a WASI command: set K to V in its environment, over the manifest's (repeatable)"],
    ...SANDBOX_OPTION_HELP,
    ...HOST_OPTION_HELP,
  ],
  maxPositionals: 2,
  async run({ values, positionals, io }) {
    const [id, fn] = positionals;
    if (id === undefined || fn === undefined) throw new UsageError('expected a plugin ID and a FUNCTION');
    if (values.input !== undefined && values['input-file'] !== undefined) {
      throw new UsageError('give --input or --input-file, not both');
    }
    let input: Uint8Array = new Uint8Array(0);
    if (typeof values.input === 'string') input = Buffer.from(values.input);
    else if (typeof values['input-file'] === 'string') {
      const file = values['input-file'];
      try {
        input = readFileSync(file === '-' ? 0 : file);
      } catch (error) {
        throw new UsageError(`cannot read --input-file ${file}: ${(error as Error).message}`);
      }
    }
    const wasi = callWasiFrom(values);
    const { config, forceMode } = sandboxChoice(values, hostConfigFrom(values, io));
    const host = await PluginHost.start({
      config,
      plugins: [id],
      ...(forceMode === undefined ? {} : { forceMode }),
    });
    try {
      const outcome = await host.call(id, fn, input, wasi === undefined ? undefined : { wasi });
      if (values.json === true) {
        // The two figures the output has always had (not CallStats.endedAt, a reading of this process's clock).
        const { fuelConsumed, durationMs } = outcome.stats;
        const stats = { fuelConsumed, durationMs };
        io.stdout(`${toJson({ ok: true, ...encodeOutput(outcome.output), error: null, stats })}\n`);
      } else {
        io.stdoutBytes(outcome.output);
      }
      return EXIT_OK;
    } catch (error) {
      if (!isReedError(error)) throw error;
      if (values.json === true) {
        io.stdout(
          // The error as the API answers it (ReedError.toJSON: code, message, pluginId, file, field, details).
          `${toJson({ ok: false, output: null, error: error.toJSON(), stats: null })}\n`,
        );
      } else {
        io.stderr(`error ${error.code}: ${escapeUnprintable(error.message)}\n`);
      }
      return EXIT_PLUGIN_ERROR;
    } finally {
      await host.close();
    }
  },
};

/**
 * `--arg` and `--env` as a call's WASI arguments and environment (checked by the host, like the API's). A `--env`
 * without `=` is a usage error; the first `=` splits name from value.
 */
function callWasiFrom(values: ParsedValues): CallWasi | undefined {
  const args = (values.arg as string[] | undefined) ?? [];
  const pairs = (values.env as string[] | undefined) ?? [];
  if (args.length === 0 && pairs.length === 0) return undefined;
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--env ${pair}: expected NAME=VALUE`);
    Object.defineProperty(env, pair.slice(0, at), {
      value: pair.slice(at + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return { ...(args.length > 0 ? { args } : {}), ...(pairs.length > 0 ? { env } : {}) };
}
