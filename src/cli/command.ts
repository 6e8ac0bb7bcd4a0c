import type { ParseArgsConfig } from 'node:util';
import { ReedError } from '../errors.js';
import { type HostConfig, loadHostConfig } from '../host/host-config.js';
import { CONTAINER_RUNTIMES, SANDBOX_MODES } from '../manifest/schema.js';
import type { ContainerRuntime, SandboxMode } from '../manifest/types.js';
import { jsonText } from '../safe-text.js';

/** Exit statuses of every command: 0 all valid/ok, 1 a plugin has an error, 2 bad usage or configuration. */
export const EXIT_OK = 0;
export const EXIT_PLUGIN_ERROR = 1;
export const EXIT_USAGE = 2;

export interface CommandIo {
  stdout: (text: string) => void;
  stdoutBytes: (bytes: Uint8Array) => void;
  stderr: (text: string) => void;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** One `reed-plugins` subcommand. Add a command by writing one of these and listing it in commands/index.ts. */
export interface Command {
  name: string;
  /** `reed-plugins <name> <usage>` */
  usage: string;
  summary: string;
  options: OptionSpec;
  /** Help lines for the options, in the order shown. */
  optionHelp: [string, string][];
  maxPositionals: number;
  run(args: { values: ParsedValues; positionals: string[]; io: CommandIo }): Promise<number>;
}

/** Options every command that reads plugins shares. */
export const HOST_OPTIONS: OptionSpec = {
  'plugin-dir': { type: 'string', multiple: true },
  config: { type: 'string' },
  'no-default-paths': { type: 'boolean' },
  json: { type: 'boolean' },
};

export const HOST_OPTION_HELP: [string, string][] = [
  ['--plugin-dir DIR', 'search DIR for plugins (repeatable; replaces plugin_dirs from reed.toml)'],
  ['--no-default-paths', 'do not also search ~/.reed/plugins and /usr/local/share/reed/plugins'],
  ['--config FILE', 'host configuration (default: $REED_CONFIG, else ./reed.toml if present)'],
  ['--json', 'print machine-readable JSON'],
];

/** `--mode` and `--runtime`, shared by the commands that run plugins. */
export const SANDBOX_OPTIONS: OptionSpec = {
  mode: { type: 'string' },
  runtime: { type: 'string' },
};

export const SANDBOX_OPTION_HELP: [string, string][] = [
  [
    '--mode MODE',
    `run every plugin in this sandbox mode: ${SANDBOX_MODES.join(', ')} (default: the manifest's, else reed.toml's)`,
  ],
  [
    '--runtime RUNTIME',
    `container runtime for plugins that name none: ${CONTAINER_RUNTIMES.join(', ')} (default: reed.toml's)`,
  ],
];

/** The host configuration with `--runtime` applied, and `--mode` as PluginHost's `forceMode`. */
export function sandboxChoice(
  values: ParsedValues,
  config: HostConfig,
): { config: HostConfig; forceMode?: SandboxMode } {
  const mode = values.mode as string | undefined;
  if (mode !== undefined && !(SANDBOX_MODES as readonly string[]).includes(mode))
    throw new UsageError(`--mode must be one of ${SANDBOX_MODES.join(', ')}`);
  const runtime = values.runtime as string | undefined;
  if (runtime !== undefined) {
    if (!(CONTAINER_RUNTIMES as readonly string[]).includes(runtime))
      throw new UsageError(`--runtime must be one of ${CONTAINER_RUNTIMES.join(', ')}`);
    config.containerRuntime = runtime as ContainerRuntime;
  }
  return { config, ...(mode === undefined ? {} : { forceMode: mode as SandboxMode }) };
}

export class UsageError extends ReedError {
  constructor(message: string) {
    super('usage', message);
  }
}

export function hostConfigFrom(values: ParsedValues, io: CommandIo): HostConfig {
  const pluginDirs = values['plugin-dir'] as string[] | undefined;
  const config = loadHostConfig({
    cwd: io.cwd,
    env: io.env,
    ...(typeof values.config === 'string' ? { file: values.config } : {}),
    overrides: {
      ...(pluginDirs === undefined ? {} : { pluginDirs }),
      ...(values['no-default-paths'] === true ? { defaultSearchPaths: false } : {}),
    },
  });
  return config;
}

/** JSON that survives TOML's big integers. */
export function toJson(value: unknown): string {
  // Terminal-safe (src/safe-text.ts) and never a throw: what cannot be serialized prints as an internal_error.
  return (
    jsonText(value, 2) ??
    JSON.stringify(
      { ok: false, error: { code: 'internal_error', message: 'the result could not be serialized as JSON' } },
      null,
      2,
    )
  );
}
