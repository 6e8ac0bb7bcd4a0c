import { rmSync } from 'node:fs';
import { PluginHost } from '../../host/plugin-host.js';
import { DEFAULT_WATCH_DEBOUNCE_MS, watchPlugins } from '../../host/watch.js';
import {
  createApiServer,
  DEFAULT_MAX_INPUT_BYTES,
  DEFAULT_MAX_INSTALL_BYTES,
  listenOnSocket,
} from '../../server/api-server.js';
import {
  type Command,
  EXIT_OK,
  HOST_OPTION_HELP,
  HOST_OPTIONS,
  hostConfigFrom,
  SANDBOX_OPTION_HELP,
  SANDBOX_OPTIONS,
  sandboxChoice,
  UsageError,
} from '../command.js';

export const serveCommand: Command = {
  name: 'serve',
  usage: '--socket PATH [--plugin ID]... [--mode MODE] [--runtime RUNTIME] [options]',
  summary: 'load plugins and serve calls to them over HTTP on a Unix socket until SIGTERM or SIGINT',
  options: {
    ...HOST_OPTIONS,
    socket: { type: 'string' },
    plugin: { type: 'string', multiple: true },
    ...SANDBOX_OPTIONS,
    'socket-mode': { type: 'string' },
    'max-input-bytes': { type: 'string' },
    'max-install-bytes': { type: 'string' },
    watch: { type: 'boolean' },
  },
  optionHelp: [
    ['--socket PATH', 'the Unix socket to serve the API on (docs/API.md)'],
    ['--socket-mode OCTAL', 'permissions of the socket (default: 600, only this user)'],
    ['--plugin ID', 'load only this plugin and its dependencies (repeatable; default: every valid plugin)'],
    ...SANDBOX_OPTION_HELP,
    ['--max-input-bytes N', `largest call input accepted (default: ${DEFAULT_MAX_INPUT_BYTES})`],
    ['--max-install-bytes N', `largest plugin archive accepted (default: ${DEFAULT_MAX_INSTALL_BYTES})`],
    [
      '--watch',
      `development: reload a plugin from plugin_dirs when its directory changes (after ${DEFAULT_WATCH_DEBOUNCE_MS} ms of quiet)`,
    ],
    ...HOST_OPTION_HELP.filter(([o]) => o !== '--json'),
  ],
  maxPositionals: 0,
  async run({ values, io }) {
    const socket = values.socket;
    if (typeof socket !== 'string') throw new UsageError('--socket PATH is required');
    const { config, forceMode } = sandboxChoice(values, hostConfigFrom(values, io));
    const socketMode = parseNumber(values['socket-mode'], '--socket-mode', 8, 0o600);
    if (socketMode > 0o777) throw new UsageError('--socket-mode must be at most 777');
    const maxInputBytes = parseNumber(
      values['max-input-bytes'],
      '--max-input-bytes',
      10,
      DEFAULT_MAX_INPUT_BYTES,
    );
    const maxInstallBytes = parseNumber(
      values['max-install-bytes'],
      '--max-install-bytes',
      10,
      DEFAULT_MAX_INSTALL_BYTES,
    );
    const plugins = values.plugin as string[] | undefined;
    const host = await PluginHost.start({
      config,
      withInstalled: true,
      ...(plugins === undefined ? {} : { plugins }),
      ...(forceMode === undefined ? {} : { forceMode }),
    });
    const server = createApiServer(host, { maxInputBytes, maxInstallBytes });
    try {
      await listenOnSocket(server, socket, socketMode);
    } catch (error) {
      await host.close();
      throw error;
    }
    const unwatch = values.watch === true ? watchPlugins(host) : undefined;
    const failed = host.status().filter((p) => p.state !== 'ready');
    io.stderr(
      `serving ${host.status().length - failed.length} plugin(s) on ${socket}` +
        (failed.length > 0 ? `; failed: ${failed.map((p) => `${p.id} (${p.error?.code})`).join(', ')}` : '') +
        '\n',
    );
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    io.stderr(`${signal}: stopping\n`);
    unwatch?.();
    // Refuse new connections, let calls in flight finish, then stop the plugins and remove the socket.
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeIdleConnections();
    await closed;
    await host.close();
    rmSync(socket, { force: true });
    return EXIT_OK;
  },
};

function parseNumber(value: unknown, option: string, radix: number, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const n = Number.parseInt(text, radix);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${option} must be a positive ${radix === 8 ? 'octal ' : ''}number, not "${text}"`);
  return n;
}
