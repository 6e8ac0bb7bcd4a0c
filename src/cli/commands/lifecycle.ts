import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import tarFs from 'tar-fs';
import { extract } from 'tar-stream';
import { isCode } from '../../codes.js';
import { ReedError } from '../../errors.js';
import type { PluginStatus } from '../../host/plugin-host.js';
import { MANIFEST_FILE, parseManifest, readManifest } from '../../manifest/parse-manifest.js';
import { jsonText } from '../../safe-text.js';
import { type ApiAnswer, type ApiTarget, apiRequest } from '../api-client.js';
import {
  type Command,
  type CommandIo,
  EXIT_OK,
  EXIT_PLUGIN_ERROR,
  type ParsedValues,
  toJson,
  UsageError,
} from '../command.js';
import { table } from '../output.js';
import type { Sample } from '../prom-text.js';
import { scrape, watchCells, watchRows } from '../status-watch.js';

// The commands that drive a running `reed-plugins serve` through its API (docs/API.md): install, remove, reload,
// status. Exit status as every command: 0 done, 1 the server refused or failed (its code printed), 2 bad usage.

const SOCKET = {
  socket: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
} as const;
const SOCKET_HELP: [string, string][] = [
  ['--socket PATH', 'the Unix socket of the running serve (required)'],
  ['--token-file F', 'send the bearer token in F (a serve with --admin-token-file requires one)'],
  ['--json', "print the server's JSON answer"],
];

function socketOf(values: ParsedValues): ApiTarget {
  if (typeof values.socket !== 'string')
    throw new UsageError('--socket PATH is required (the serve to talk to)');
  const file = values['token-file'];
  if (file === undefined) return { socketPath: values.socket };
  let token: string;
  try {
    if (statSync(String(file)).size > 4096) throw new Error('larger than 4096 bytes');
    token = readFileSync(String(file), 'utf8').trim();
  } catch (error) {
    throw new UsageError(`--token-file ${String(file)} cannot be read: ${(error as Error).message}`);
  }
  if (!/^[!-~]{1,512}$/.test(token))
    throw new UsageError(`--token-file ${String(file)} does not hold one token (printable, no white space)`);
  return { socketPath: values.socket, token };
}

/** Prints the answer (JSON, or `text` of it); a refusal prints its code and exits 1. */
function report(
  io: CommandIo,
  values: ParsedValues,
  answer: ApiAnswer,
  text: (body: ApiAnswer['body']) => string,
): number {
  if (values.json === true) {
    io.stdout(`${toJson(answer.body)}\n`);
    return answer.body.ok ? EXIT_OK : EXIT_PLUGIN_ERROR;
  }
  if (!answer.body.ok) {
    const error = answer.body.error;
    const code = error?.code !== undefined && isCode(error.code) ? error.code : 'internal_error';
    throw new ReedError(code, error?.message ?? `the server answered HTTP ${answer.status}`);
  }
  io.stdout(`${text(answer.body)}\n`);
  return EXIT_OK;
}

const pluginLine = (p: PluginStatus) => `${p.id} ${p.version} ${p.state} (${p.mode})`;
const segment = (id: string) => encodeURIComponent(id);

export const installCommand: Command = {
  name: 'install',
  usage: 'DIR|FILE.tar --socket PATH [--token-file F] [--id ID] [--json]',
  summary: 'install or upgrade a plugin in a running serve, from its directory or a tar of it',
  options: { ...SOCKET, id: { type: 'string' } },
  optionHelp: [['--id ID', "install as ID (default: the manifest's metadata.id)"], ...SOCKET_HELP],
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const [source] = positionals;
    if (source === undefined) throw new UsageError('expected a plugin directory or a tar file');
    const socket = socketOf(values);
    let isDir: boolean;
    try {
      isDir = statSync(source).isDirectory();
    } catch (error) {
      throw new UsageError(`cannot read ${source}: ${(error as Error).message}`);
    }
    const id = typeof values.id === 'string' ? values.id : isDir ? idOfDir(source) : await idOfTar(source);
    // A directory is packed as it is: links are sent as links (and refused by the server), never followed.
    const body: Readable = isDir ? (tarFs.pack(source) as unknown as Readable) : createReadStream(source);
    const answer = await apiRequest(socket, 'PUT', `/v1/admin/plugins/${segment(id)}`, body, {
      'Content-Type': 'application/x-tar',
    });
    return report(io, values, answer, (b) => `installed ${pluginLine(b.plugin as PluginStatus)}`);
  },
};

function idOfDir(dir: string): string {
  const parsed = readManifest(join(dir, MANIFEST_FILE));
  if (parsed.id === undefined) throw new UsageError(`no plugin id in ${join(dir, MANIFEST_FILE)}; give --id`);
  return parsed.id;
}

/** The id in the archive's manifest (at its top or in its one top directory), read without writing anything. */
async function idOfTar(file: string): Promise<string> {
  const ex = extract();
  let text: string | undefined;
  ex.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    const wanted = name === MANIFEST_FILE || /^[^/]+\/plugin\.toml$/.test(name);
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => {
      if (wanted && chunks.reduce((n, b) => n + b.length, 0) < 65_536) chunks.push(c as Buffer);
    });
    stream.on('end', () => {
      if (wanted && text === undefined) text = Buffer.concat(chunks).toString('utf8');
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', () => resolve());
    ex.on('error', reject);
    createReadStream(file)
      .on('error', reject)
      .pipe(ex as unknown as NodeJS.WritableStream);
  }).catch((error: Error) => {
    throw new UsageError(`cannot read ${file} as a tar archive: ${error.message}`);
  });
  const id = text === undefined ? undefined : parseManifest(text, MANIFEST_FILE).id;
  if (id === undefined) throw new UsageError(`no plugin id in a ${MANIFEST_FILE} of ${file}; give --id`);
  return id;
}

export const removeCommand: Command = {
  name: 'remove',
  usage: 'ID --socket PATH [--token-file F] [--with-dependants] [--json]',
  summary: 'drain, stop and forget a plugin in a running serve',
  options: { ...SOCKET, 'with-dependants': { type: 'boolean' } },
  optionHelp: [['--with-dependants', 'remove the plugins that depend on it too (first)'], ...SOCKET_HELP],
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const [id] = positionals;
    if (id === undefined) throw new UsageError('expected a plugin ID');
    const query = values['with-dependants'] === true ? '?dependants=true' : '';
    const answer = await apiRequest(socketOf(values), 'DELETE', `/v1/admin/plugins/${segment(id)}${query}`);
    return report(io, values, answer, (b) => `removed ${(b.removed as string[]).join(', ')}`);
  },
};

export const reloadCommand: Command = {
  name: 'reload',
  usage: 'ID --socket PATH [--token-file F] [--json]',
  summary: 'reload a plugin in a running serve from its directory on disk (an upgrade with drain)',
  options: { ...SOCKET },
  optionHelp: SOCKET_HELP,
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const [id] = positionals;
    if (id === undefined) throw new UsageError('expected a plugin ID');
    const answer = await apiRequest(socketOf(values), 'POST', `/v1/admin/plugins/${segment(id)}/reload`);
    return report(io, values, answer, (b) => `reloaded ${pluginLine(b.plugin as PluginStatus)}`);
  },
};

export const statusCommand: Command = {
  name: 'status',
  usage: '[ID] --socket PATH [--token-file F] [--json] [--watch [--interval SECONDS] [--count N]]',
  summary: "a running serve's plugins: version, mode, state, crashes, error; --watch: a live table",
  options: { ...SOCKET, watch: { type: 'boolean' }, interval: { type: 'string' }, count: { type: 'string' } },
  optionHelp: [
    ...SOCKET_HELP,
    [
      '--watch',
      'redraw a table of every plugin in place: state, mode, calls/s, p50/p99, errors/s, restarts, memory (needs GET /metrics: an admin token when tokens are on); with --json, one JSON line per refresh',
    ],
    ['--interval SECONDS', 'time between refreshes of --watch (default 2, at least 0.1)'],
    ['--count N', 'stop --watch after N refreshes (default: until Ctrl-C)'],
  ],
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const [id] = positionals;
    if (values.watch === true) {
      if (id !== undefined) throw new UsageError('--watch shows every plugin: no ID');
      return watchStatus(socketOf(values), values, io);
    }
    const path = id === undefined ? '/v1/plugins' : `/v1/plugins/${segment(id)}`;
    const answer = await apiRequest(socketOf(values), 'GET', path);
    return report(io, values, answer, (b) => {
      const plugins = (id === undefined ? b.plugins : [b.plugin]) as PluginStatus[];
      return table(
        ['ID', 'VERSION', 'MODE', 'STATE', 'CRASHES', 'ERROR'],
        plugins.map((p) => [
          p.id,
          p.version,
          p.mode,
          p.state +
            (p.replicas === undefined ? '' : ` (${p.replicas.ready}/${p.replicas.total} replicas ready)`) +
            (p.retryAt === undefined ? '' : ` (retry at ${p.retryAt})`),
          String(p.crashes),
          p.error === undefined ? '' : `${p.error.code}: ${p.error.message}`,
        ]),
      );
    });
  },
};

/** `status --watch`: scrapes GET /v1/plugins and GET /metrics every interval and redraws the table in place. */
async function watchStatus(target: ApiTarget, values: ParsedValues, io: CommandIo): Promise<number> {
  const interval = values.interval === undefined ? 2 : Number(values.interval);
  if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600)
    throw new UsageError('--interval must be a number of seconds from 0.1 to 3600');
  const count = values.count === undefined ? Number.POSITIVE_INFINITY : Number(values.count);
  if (!Number.isSafeInteger(count) && count !== Number.POSITIVE_INFINITY)
    throw new UsageError('--count must be a whole number');
  if (count < 1) throw new UsageError('--count must be at least 1');
  let stop: (() => void) | undefined;
  let stopped = false;
  const onSignal = () => {
    stopped = true;
    stop?.();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let before: { samples: Sample[]; at: number } | undefined;
    for (let frame = 0; frame < count && !stopped; frame++) {
      const at = performance.now();
      const { plugins, samples } = await scrape(target);
      const rows = watchRows(
        plugins,
        samples,
        before?.samples,
        before === undefined ? 0 : (at - before.at) / 1000,
      );
      before = { samples, at };
      if (values.json === true)
        // One line per refresh (JSON Lines), terminal-safe as every JSON the CLI prints.
        io.stdout(`${jsonText({ at: new Date().toISOString(), plugins: rows }) ?? '{}'}\n`);
      else {
        const { header, cells } = watchCells(rows);
        // Cursor home and clear: the table is redrawn in place.
        io.stdout(
          `\x1b[H\x1b[2J${new Date().toISOString()}  ${plugins.length} plugin(s), every ${interval} s (Ctrl-C stops)\n\n${table(header, cells)}\n`,
        );
      }
      if (frame + 1 < count && !stopped)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, interval * 1000);
          stop = () => {
            clearTimeout(timer);
            resolve();
          };
        });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return EXIT_OK;
}
