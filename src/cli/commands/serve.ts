import { rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { DEFAULT_WATCH_DEBOUNCE_MS, watchPlugins } from '../../host/watch.js';
import {
  buildApi,
  DEFAULT_MAX_INPUT_BYTES,
  DEFAULT_MAX_INSTALL_BYTES,
  listenOnSocket,
  MAX_HEADER_BYTES,
} from '../../server/api-server.js';
import { Authenticator } from '../../server/auth.js';
import { ReedMetrics } from '../../server/metrics.js';
import { listenMetrics } from '../../server/metrics-server.js';
import { listenTls, parseListen } from '../../server/tls-listener.js';
import { TenantRegistry } from '../../tenants/registry.js';
import { AdminToken, TokenStore } from '../../tenants/tokens.js';
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
  usage:
    '--socket PATH [--admin-token-file F] [--listen HOST:PORT --tls-cert F --tls-key F [--tls-client-ca F]] [--plugin ID]... [options]',
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
    'admin-token-file': { type: 'string' },
    listen: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    'metrics-listen': { type: 'string' },
  },
  optionHelp: [
    ['--socket PATH', 'the Unix socket to serve the API on (docs/API.md)'],
    ['--socket-mode OCTAL', 'permissions of the socket (default: 600, only this user)'],
    [
      '--admin-token-file F',
      'the admin bearer token (a file of this user, mode 600); tokens are then required on the socket too',
    ],
    [
      '--listen HOST:PORT',
      'also serve HTTPS on TCP (tokens always required there; needs --tls-cert, --tls-key)',
    ],
    ['--tls-cert FILE, --tls-key FILE', 'the TLS certificate (chain) and key of --listen, PEM'],
    ['--tls-client-ca FILE', 'mutual TLS: clients must present a certificate this CA signed'],
    [
      '--metrics-listen HOST:PORT',
      'also serve GET /metrics (Prometheus) over plain HTTP on TCP, unauthenticated: bind it to loopback or a scrape network',
    ],
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
    const tls = tlsOptions(values);
    // Before anything starts: a bad admin token file or token store stops serve with its code.
    const admin =
      values['admin-token-file'] === undefined
        ? undefined
        : AdminToken.fromFile(String(values['admin-token-file']));
    const auth = new Authenticator({ tokens: TokenStore.open(config.dataDir), admin });
    const metricsAddress =
      values['metrics-listen'] === undefined ? undefined : parseListen(String(values['metrics-listen']));
    const plugins = values.plugin as string[] | undefined;
    // Before the host starts: its loads are counted too.
    let directory: TenantRegistry | undefined;
    const metrics = new ReedMetrics({
      targets: () =>
        (directory?.list() ?? []).map((t) => ({ tenant: t.id, host: t.host, usage: () => t.usage() })),
    });
    // Every tenant's host (the default tenant's is the host of before tenants; reed.toml's [tenants] and those
    // created through the API the others).
    const registry = await TenantRegistry.start({
      config,
      withInstalled: true,
      ...(plugins === undefined ? {} : { plugins }),
      ...(forceMode === undefined ? {} : { forceMode }),
    });
    directory = registry;
    const app = buildApi(directory, {
      maxInputBytes,
      maxInstallBytes,
      logger: registry.logger,
      auth,
      metrics,
    });
    const server = app.server;
    let tlsServer: HttpsServer | undefined;
    let metricsServer: Server | undefined;
    try {
      await app.ready();
      await listenOnSocket(server, socket, socketMode);
      if (metricsAddress !== undefined) metricsServer = await listenMetrics(metrics, metricsAddress);
      if (tls !== undefined)
        tlsServer = await listenTls(app.routing, {
          ...tls,
          maxHeaderSize: MAX_HEADER_BYTES,
          requestTimeoutMs: server.requestTimeout,
        });
    } catch (error) {
      const listening = server.listening;
      server.close();
      metricsServer?.close();
      await registry.close();
      if (listening) rmSync(socket, { force: true });
      throw error;
    }
    const tcp = tlsServer?.address();
    const where =
      tcp === undefined || tcp === null || typeof tcp === 'string'
        ? socket
        : `${socket} and https://${tcp.family === 'IPv6' ? `[${tcp.address}]` : tcp.address}:${tcp.port}`;
    const scrape = metricsServer?.address();
    if (scrape !== undefined && scrape !== null && typeof scrape !== 'string')
      io.stderr(
        `metrics on http://${scrape.family === 'IPv6' ? `[${scrape.address}]` : scrape.address}:${scrape.port}/metrics\n`,
      );
    const unwatches = values.watch === true ? registry.list().map((t) => watchPlugins(t.host)) : [];
    const all = registry.list().flatMap((t) => t.status());
    const failed = all.filter((p) => p.state !== 'ready');
    io.stderr(
      `serving ${all.length - failed.length} plugin(s) on ${where}` +
        (failed.length > 0 ? `; failed: ${failed.map((p) => `${p.id} (${p.error?.code})`).join(', ')}` : '') +
        '\n',
    );
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    io.stderr(`${signal}: stopping\n`);
    for (const unwatch of unwatches) unwatch();
    // Refuse new connections, let calls in flight finish, then stop the plugins and remove the socket. A client
    // holding a request open (sending it slowly, or never finishing it) must not hold the stop: past the grace its
    // connection is cut, so a supervisor's stop timeout (docker's, systemd's) never has to kill us with our
    // sandboxes still running.
    const servers = [
      server,
      ...(tlsServer === undefined ? [] : [tlsServer]),
      ...(metricsServer === undefined ? [] : [metricsServer]),
    ];
    const closed = Promise.all(
      servers.map((s) => {
        const done = new Promise((resolve) => s.close(resolve));
        s.closeIdleConnections();
        return done;
      }),
    );
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((resolve) => (grace = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
    clearTimeout(grace);
    for (const s of servers) s.closeAllConnections();
    await closed;
    await registry.close();
    metrics.close();
    rmSync(socket, { force: true });
    return EXIT_OK;
  },
};

/** How long a stop waits for requests in flight before it cuts their connections. */
export const SHUTDOWN_GRACE_MS = 10_000;

/** --listen and its TLS files: all or none (TLS options without --listen are a mistake, not ignored). */
function tlsOptions(values: Record<string, unknown>) {
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  const clientCa = values['tls-client-ca'];
  if (values.listen === undefined) {
    if (cert !== undefined || key !== undefined || clientCa !== undefined)
      throw new UsageError('--tls-cert, --tls-key and --tls-client-ca are options of --listen HOST:PORT');
    return undefined;
  }
  if (typeof cert !== 'string' || typeof key !== 'string')
    throw new UsageError('--listen serves HTTPS only: it needs --tls-cert FILE and --tls-key FILE');
  let address: { host: string; port: number };
  try {
    address = parseListen(String(values.listen));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return {
    ...address,
    certFile: cert,
    keyFile: key,
    clientCaFile: typeof clientCa === 'string' ? clientCa : undefined,
  };
}

function parseNumber(value: unknown, option: string, radix: number, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const n = Number.parseInt(text, radix);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${option} must be a positive ${radix === 8 ? 'octal ' : ''}number, not "${text}"`);
  return n;
}
