import { parseArgs } from 'node:util';
import { isReedError } from '../errors.js';
import { escapeUnprintable } from '../safe-text.js';
import { LOADER_VERSION } from '../version.js';
import {
  type Command,
  type CommandIo,
  EXIT_OK,
  EXIT_PLUGIN_ERROR,
  EXIT_USAGE,
  UsageError,
} from './command.js';
import { COMMANDS } from './commands/index.js';

const PROGRAM = 'reed-plugins';

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `usage: ${PROGRAM} <command> [options]`,
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `Run \`${PROGRAM} <command> --help\` for a command's options.`,
    'Exit status: 0 ok, 1 a plugin has an error, 2 bad usage or configuration.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  const width = Math.max(...c.optionHelp.map(([o]) => o.length), 10);
  return [
    `usage: ${PROGRAM} ${c.name} ${c.usage}`,
    '',
    c.summary,
    '',
    'options:',
    ...c.optionHelp.map(([o, h]) => `  ${o.padEnd(width)}  ${h}`),
    `  ${'--help'.padEnd(width)}  show this help`,
  ].join('\n');
}

/** Runs the CLI and returns the exit status. Only bin/reed-plugins.js exits. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(`${overview()}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    io.stdout(`${LOADER_VERSION}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.stderr(`error usage: unknown command "${name}"\n\n${overview()}\n`);
    return EXIT_USAGE;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help === true) {
      io.stdout(`${commandHelp(command)}\n`);
      return EXIT_OK;
    }
    if (positionals.length > command.maxPositionals) {
      throw new UsageError(`too many arguments: ${positionals.slice(command.maxPositionals).join(' ')}`);
    }
    return await command.run({ values, positionals, io });
  } catch (error) {
    if (isReedError(error)) {
      io.stderr(`error ${error.code}: ${escapeUnprintable(error.message)}\n`);
      if (error instanceof UsageError) io.stderr(`\n${commandHelp(command)}\n`);
      return error.code === 'usage' || error.code.startsWith('config_') ? EXIT_USAGE : EXIT_PLUGIN_ERROR;
    }
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`error usage: ${escapeUnprintable(error.message)}\n\n${commandHelp(command)}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
}
