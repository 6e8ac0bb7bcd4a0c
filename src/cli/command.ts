import type { ParseArgsConfig } from 'node:util';
import { ReedError } from '../errors.js';
import { type HostConfig, loadHostConfig } from '../host/host-config.js';

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
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}
