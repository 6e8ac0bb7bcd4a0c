// `npm run soak` (issue 17, part 1): sustained load on `reed-plugins serve`, one sandbox mode at a time. Many
// concurrent API callers over ten plugins (half a WASM echo, half a C notes plugin writing and reading storage),
// for minutes; every answer is checked (status and body), and the server process is sampled every second: its
// RSS, its open file descriptors, its sandboxes (runner processes, containers). At the end the server is stopped
// with SIGTERM and what it leaves is counted: processes, containers, sandbox directories (with their sockets).
//
// What holds, per mode: every request answered with 200 and the right body; RSS at the end within 10 % of RSS
// after the warm-up; descriptors not growing; nothing left after the stop. The table goes to stdout and, with
// --write-doc, into docs/RELIABILITY.md between the soak markers, with the command that reproduced it.
//
//   npm run soak                                    # 10 minutes per mode: none, process, container (runc)
//   npm run soak -- --minutes 2 --modes none,process
//   npm run soak -- --write-doc                     # also write the table into docs/RELIABILITY.md
//
// test/integration/soak.test.ts runs the same harness for seconds per mode in `npm test`.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { alive, descendants } from './processes.js';

/** The repository: this file runs from dist/bench/ (npm run soak) and from bench/ (the test, through vitest). */
const HERE = fileURLToPath(new URL('.', import.meta.url));
const REPO = join(HERE, HERE.endsWith('/dist/bench/') ? '../..' : '..');
const BIN = join(REPO, 'bin/reed-plugins.js');
/** RSS may grow this much from the end of the warm-up to the end of the run (issue 17). */
export const RSS_GROWTH_LIMIT = 0.1;
/** Descriptors the server may hold at the end above what it held after the warm-up (timers, a log rotation). */
export const FD_SLACK = 8;

export type SoakMode = 'none' | 'process' | 'container';

export interface SoakOptions {
  mode: SoakMode;
  /** How long the callers run, in seconds (the warm-up included). */
  seconds: number;
  callers: number;
  plugins: number;
  /** The share of `seconds` before RSS and descriptors are taken as the baseline. */
  warmupFraction?: number;
  /** Called once a second with the running counts (the CLI prints progress with it). */
  /** Each second: requests answered so far, seconds since the callers started, the server's RSS (MiB) now. */
  onTick?: (answered: number, elapsedS: number, rssMiB: number) => void;
  /**
   * Fault injection (docs/RELIABILITY.md, "Faults during load"): called once the callers have started, and run
   * beside them; it injects its faults through the context (killing runners, filling a directory, ...) and marks
   * each with `ctx.mark`, which gives the affected plugins' recovery times in `SoakResult.faults`.
   */
  fault?: (ctx: FaultContext) => Promise<void>;
  /** Lines appended to the server's reed.toml (sections of its own: `[supervision]`, `[limits]`, ...). */
  configExtra?: string[];
  /** Plugins beside the ten, each with callers of its own calling one function (a slow plugin, ...). */
  extraPlugins?: ExtraPlugin[];
  /** Absolute data_dir and cache_dir for the server (default: data/ and cache/ in its directory). */
  dataDir?: string;
  cacheDir?: string;
  /** The server's command line, changed before it is spawned (e.g. run under `prlimit`). */
  serveCommand?: (argv: string[]) => string[];
}

/** A plugin beside the soak's echo and notes plugins, and its callers. */
export interface ExtraPlugin {
  id: string;
  /** The plugin directory copied (its manifest's id replaced by `id`). */
  source: string;
  /** Text appended to the copied plugin.toml (e.g. a `[limits]` table). */
  manifestExtra?: string;
  callers: number;
  fn: string;
  input: string;
  /** The expected output; absent: any 200 is a success. */
  expected?: string;
  /** When its callers start and stop, in ms after the start (default: with the others). */
  startAtMs?: number;
  stopAtMs?: number;
}

/** What a fault hook gets: the server and its sandboxes, and the way to mark a fault. */
export interface FaultContext {
  mode: SoakMode;
  /** The server's working directory: reed.toml, cache/, data/, runtime/. */
  dir: string;
  serverPid: number;
  plugins: { id: string; kind: string }[];
  /** Milliseconds since the callers started. */
  elapsedMs(): number;
  /** Milliseconds until the callers stop. */
  remainingMs(): number;
  sleep(ms: number): Promise<void>;
  /** Records a fault now: the result gives each plugin's time from now to its next success (`recoveryMs`). */
  mark(label: string, pluginIds: string[]): void;
  /** The runner processes (process mode): the sandboxed node of each plugin, found by `--plugin-id` (bench only). */
  runners(): { pid: number; pluginId: string }[];
  /** The server's containers (container mode), by the plugin id label. */
  containers(): Promise<{ id: string; pluginId: string }[]>;
  docker: Docker | undefined;
  /** The server's RSS now, in MiB. */
  rssMiB(): number;
  /** One checked call through the API, counted with the callers' (true: a 200 with `expected`, or any output). */
  call(id: string, fn: string, input: string, expected?: string): Promise<boolean>;
}

/** One plugin's answers: successes, failures by code (`no_answer`: the connection failed), latencies. */
export interface PluginCounts {
  ok: number;
  failed: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  /** The median of successful calls only. */
  okP50Ms: number;
}

/** A fault marked by the hook: when (ms after the callers started), and each plugin's time to its next success. */
export interface FaultRecord {
  label: string;
  atMs: number;
  /** Plugin id -> ms from the fault to the end of the first success of a call sent after it (null: none). */
  recoveryMs: Record<string, number | null>;
}

export interface SoakResult {
  mode: SoakMode;
  seconds: number;
  callers: number;
  plugins: number;
  requests: number;
  /** Answers that were not a 200 with the expected body, by status (0: no answer: the connection failed). */
  failures: Record<string, number>;
  /** The first few failures, described. */
  failureSamples: string[];
  p50Ms: number;
  p99Ms: number;
  rssWarmMiB: number;
  rssEndMiB: number;
  rssGrowth: number;
  fdsWarm: number;
  fdsEnd: number;
  /** Sandboxes (runner processes or containers) while the callers ran: the most seen. */
  sandboxesMax: number;
  /** Left after the server stopped: processes of its tree, containers of its pid, sandbox directories. */
  leftProcesses: number;
  leftContainers: number;
  leftSandboxDirs: number;
  /** serve's exit: its code, or the signal that ended it. */
  serverExit: string;
  /** Set when serve exited before the run's stop: ms after its start. */
  diedAtMs?: number;
  /** Where the last MiB of serve's log was kept, when a request failed or serve did not exit cleanly. */
  logFile?: string;
  loadAverage: number;
  perPlugin: Record<string, PluginCounts>;
  faults: FaultRecord[];
  /** The server's RSS, every second (MiB). */
  rssSamplesMiB: number[];
}

/** The soak's verdict: what did not hold, empty when everything did. */
export function soakProblems(r: SoakResult): string[] {
  const problems: string[] = [];
  const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
  if (r.requests === 0) problems.push('no request was answered');
  if (failed > 0) problems.push(`${failed} requests failed: ${r.failureSamples.join('; ')}`);
  if (r.rssGrowth > RSS_GROWTH_LIMIT)
    problems.push(`RSS grew ${(r.rssGrowth * 100).toFixed(1)} % after the warm-up (limit 10 %)`);
  if (r.fdsEnd > r.fdsWarm + FD_SLACK) problems.push(`descriptors grew from ${r.fdsWarm} to ${r.fdsEnd}`);
  if (r.leftProcesses > 0) problems.push(`${r.leftProcesses} processes left after the stop`);
  if (r.leftContainers > 0) problems.push(`${r.leftContainers} containers left after the stop`);
  if (r.leftSandboxDirs > 0) problems.push(`${r.leftSandboxDirs} sandbox directories left after the stop`);
  if (r.diedAtMs !== undefined)
    problems.push(
      `serve died during the run, ${Math.round(r.diedAtMs)} ms after its start (${r.serverExit})`,
    );
  else if (r.serverExit !== '0') problems.push(`serve exited with ${r.serverExit} on its stop`);
  if (problems.length > 0 && r.logFile !== undefined) problems.push(`serve's log: ${r.logFile}`);
  return problems;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The plugins: copies of the two examples under ids of their own (soak.echo-N, soak.notes-N). */
function pluginTree(root: string, count: number): { id: string; kind: 'echo' | 'notes' }[] {
  const plugins: { id: string; kind: 'echo' | 'notes' }[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 2 === 0 ? 'echo' : 'notes';
    const id = `soak.${kind}-${i}`;
    const dir = join(root, `${kind}-${i}`);
    cpSync(join(REPO, 'examples/plugins', kind === 'echo' ? 'hello' : 'notes-c'), dir, { recursive: true });
    const toml = join(dir, 'plugin.toml');
    writeFileSync(toml, readFileSync(toml, 'utf8').replace(/^id = ".*"$/m, `id = "${id}"`));
    plugins.push({ id, kind });
  }
  return plugins;
}

/** The RSS of `pid` in MiB; 0 once it is gone (the server's death is reported as such, not as a read error). */
function rssMiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(match?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

const percentile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length * q)] ?? 0;
};

/** The sandboxed runner processes of the server's tree: node running the runner, by its `--plugin-id`. */
function runnersOf(serverPid: number): { pid: number; pluginId: string }[] {
  const out: { pid: number; pluginId: string }[] = [];
  for (const pid of descendants(serverPid)) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = argv.indexOf('--plugin-id');
    if (at < 0 || !(argv[0] ?? '').endsWith('node')) continue;
    out.push({ pid, pluginId: argv[at + 1] ?? '' });
  }
  return out;
}

/** Open descriptors of `pid`; 0 once it is gone. */
const fdCount = (pid: number) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
};

const medianOf = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : (sorted[sorted.length >> 1] as number);
};

async function startServe(
  dir: string,
  mode: SoakMode,
  ids: string[],
  serveCommand?: (argv: string[]) => string[],
): Promise<{ child: ChildProcess; tail: LogTail }> {
  const argv = [process.execPath, BIN, 'serve', '--socket', join(dir, 'api.sock'), '--no-default-paths'];
  argv.push('--mode', mode);
  for (const id of ids) argv.push('--plugin', id);
  const [file, ...args] = serveCommand === undefined ? argv : serveCommand(argv);
  const child = spawn(file as string, args, {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir, REED_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const tail = new LogTail();
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => {
      tail.push(c);
      if (err.length < 65_536) err += c.toString();
      if (err.includes('serving ')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`serve (${mode}) exited with ${code}: ${err}`)));
  });
  return { child, tail };
}

/** The last MiB of serve's log (warnings and errors: REED_LOG_LEVEL=warn), kept to explain a failure. */
class LogTail {
  static readonly MAX_BYTES = 1024 * 1024;
  #chunks: Buffer[] = [];
  #bytes = 0;
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes > LogTail.MAX_BYTES && this.#chunks.length > 1)
      this.#bytes -= (this.#chunks.shift() as Buffer).length;
  }
  /** Writes the tail to a file of its own under the temporary directory; returns its path. */
  save(mode: SoakMode): string {
    const file = join(tmpdir(), `reed-soak-${mode}-${process.pid}-${Date.now()}.log`);
    writeFileSync(file, Buffer.concat(this.#chunks));
    return file;
  }
}

/** One API call; resolves with the status and body (status 0 when the connection failed). */
function call(
  agent: Agent,
  socketPath: string,
  path: string,
  body: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ agent, socketPath, method: 'POST', path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', (e) => resolve({ status: 0, body: String(e) }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.end(body);
  });
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { mode, seconds, callers } = options;
  const dir = mkdtempSync(join(tmpdir(), `reed-soak-${mode}-`));
  chmodSync(dir, 0o755); // runners (other uids) pass through it to their sockets under runtime/
  const pluginsDir = join(dir, 'plugins');
  const plugins = pluginTree(pluginsDir, options.plugins);
  writeFileSync(
    join(dir, 'reed.toml'),
    [
      `plugin_dirs = ["${pluginsDir}"]`,
      `cache_dir = "${options.cacheDir ?? 'cache'}"`,
      `data_dir = "${options.dataDir ?? 'data'}"`,
      'runtime_dir = "runtime"',
      '[signatures]',
      'require = "none"',
      ...(options.configExtra ?? []),
      '',
    ].join('\n'),
  );
  const extras = options.extraPlugins ?? [];
  for (const extra of extras) {
    const target = join(pluginsDir, extra.id);
    cpSync(extra.source, target, { recursive: true });
    const toml = join(target, 'plugin.toml');
    const text = readFileSync(toml, 'utf8').replace(/^id = ".*"$/m, `id = "${extra.id}"`);
    writeFileSync(toml, `${text}\n${extra.manifestExtra ?? ''}\n`);
  }
  const socketPath = join(dir, 'api.sock');
  const { child: server, tail } = await startServe(
    dir,
    mode,
    [...plugins.map((p) => p.id), ...extras.map((e) => e.id)],
    options.serveCommand,
  );
  const pid = server.pid as number;
  /** Set when serve exits before the run's stop (ms after the start): the callers and sampler end, the result says so. */
  let diedAtMs: number | undefined;
  let stopping = false;
  const spawnedAt = performance.now();
  const exited = new Promise<string>((r) =>
    server.once('exit', (code, signal) => {
      if (!stopping) diedAtMs = performance.now() - spawnedAt;
      r(signal ?? String(code));
    }),
  );
  const docker = mode === 'container' ? new Docker() : undefined;
  const containersOf = async () =>
    docker === undefined
      ? 0
      : (await docker.listContainers({ all: true, filters: { label: [`reed.host.pid=${pid}`] } })).length;

  // A connection per caller, the extra plugins' callers included (none waits in the agent behind another's call).
  const agent = new Agent({
    keepAlive: true,
    maxSockets: callers + extras.reduce((n, e) => n + e.callers, 0) + 1,
  });
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  const failureSamples: string[] = [];
  let answered = 0;
  const started = performance.now();
  const endAt = started + seconds * 1000;
  const running = () => performance.now() < endAt && diedAtMs === undefined;
  const fail = (status: number, what: string) => {
    failures[String(status)] = (failures[String(status)] ?? 0) + 1;
    if (failureSamples.length < 5) failureSamples.push(`${status} ${what.slice(0, 300)}`);
  };
  const perPlugin = new Map<
    string,
    { ok: number; failed: Record<string, number>; all: number[]; okTimes: number[] }
  >();
  const faults: FaultRecord[] = [];
  /** One request, checked: a 200 whose output is `expected` (any output when undefined). True when it held. */
  const checked = async (id: string, fn: string, input: string, expected: string | undefined) => {
    const t = performance.now();
    const answer = await call(agent, socketPath, `/v1/plugins/${id}/call/${fn}`, input);
    const end = performance.now();
    latencies.push(end - t);
    answered++;
    let parsed: { output?: string; error?: { code?: string } } | undefined;
    try {
      parsed = JSON.parse(answer.body) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const counts = perPlugin.get(id) ?? { ok: 0, failed: {}, all: [], okTimes: [] };
    perPlugin.set(id, counts);
    counts.all.push(end - t);
    const held = answer.status === 200 && (expected === undefined || parsed?.output === expected);
    if (held) {
      counts.ok++;
      counts.okTimes.push(end - t);
      for (const f of faults)
        if (t >= started + f.atMs && f.recoveryMs[id] === null) f.recoveryMs[id] = end - started - f.atMs;
      return true;
    }
    const code =
      answer.status === 0
        ? 'no_answer'
        : typeof parsed?.error?.code === 'string'
          ? parsed.error.code
          : answer.status === 200
            ? 'wrong_output'
            : `status_${answer.status}`;
    counts.failed[code] = (counts.failed[code] ?? 0) + 1;
    fail(answer.status, `${id}/${fn}: ${answer.body}`);
    return false;
  };
  const caller = async (index: number) => {
    for (let n = 0; running(); n++) {
      const plugin = plugins[(index + n) % plugins.length] as (typeof plugins)[number];
      if (plugin.kind === 'echo') {
        await checked(plugin.id, 'echo', `soak ${index} ${n}`, `soak ${index} ${n}`);
      } else {
        // Keys of this caller's own (eight of them, so storage stays bounded): the get must read the put (and is
        // not sent when the put failed: a fault may have stopped it).
        const key = `c${index}k${n % 8}`;
        if (await checked(plugin.id, 'put', `${key}=v${n}`, ''))
          await checked(plugin.id, 'get', key, `v${n}`);
      }
    }
  };
  const extraCaller = async (extra: ExtraPlugin) => {
    const stopAt = Math.min(endAt, started + (extra.stopAtMs ?? Number.POSITIVE_INFINITY));
    if (extra.startAtMs !== undefined) await sleep(extra.startAtMs);
    while (performance.now() < stopAt && diedAtMs === undefined)
      await checked(extra.id, extra.fn, extra.input, extra.expected);
  };
  const context: FaultContext = {
    mode,
    dir,
    serverPid: pid,
    plugins: [...plugins, ...extras.map((e) => ({ id: e.id, kind: 'extra' }))],
    elapsedMs: () => performance.now() - started,
    remainingMs: () => endAt - performance.now(),
    sleep,
    mark: (label, ids) =>
      faults.push({
        label,
        atMs: performance.now() - started,
        recoveryMs: Object.fromEntries(ids.map((id) => [id, null])),
      }),
    runners: () => runnersOf(pid),
    containers: async () =>
      docker === undefined
        ? []
        : (await docker.listContainers({ all: true, filters: { label: [`reed.host.pid=${pid}`] } })).map(
            (c) => ({
              id: c.Id,
              pluginId: c.Labels['reed.plugin.id'] ?? '',
            }),
          ),
    docker,
    rssMiB: () => rssMiB(pid),
    call: (id, fn, input, expected) => checked(id, fn, input, expected),
  };
  const warmupAt = started + seconds * 1000 * (options.warmupFraction ?? 0.1);
  const rssWarm: number[] = [];
  const rssEnd: number[] = [];
  let fdsWarm = 0;
  let sandboxesMax = 0;
  let lastTree: number[] = [];
  const samples: { at: number; rss: number; fds: number }[] = [];
  const sampler = (async () => {
    while (running()) {
      await sleep(1000);
      const now = performance.now();
      const sample = { at: now, rss: rssMiB(pid), fds: fdCount(pid) };
      samples.push(sample);
      lastTree = descendants(pid);
      sandboxesMax = Math.max(
        sandboxesMax,
        mode === 'container' ? await containersOf() : mode === 'process' ? lastTree.length : 0,
      );
      if (now >= warmupAt && rssWarm.length < 5) {
        rssWarm.push(sample.rss);
        fdsWarm = Math.max(fdsWarm, sample.fds);
      }
      options.onTick?.(answered, Math.round((now - started) / 1000), sample.rss);
    }
  })();
  await Promise.all([
    ...Array.from({ length: callers }, (_, i) => caller(i)),
    ...extras.flatMap((e) => Array.from({ length: e.callers }, () => extraCaller(e))),
    sampler,
    options.fault?.(context),
  ]);
  for (const s of samples.slice(-5)) rssEnd.push(s.rss);
  const fdsEnd = fdCount(pid);
  agent.destroy();

  // Stop: what the server's tree held, then nothing of it may be left.
  const tree = [...new Set([...lastTree, ...descendants(pid)])];
  stopping = true;
  server.kill('SIGTERM');
  const serverExit = await exited;
  let leftProcesses = tree.filter(alive).length;
  for (let i = 0; i < 50 && leftProcesses > 0; i++) {
    await sleep(200);
    leftProcesses = tree.filter(alive).length;
  }
  const leftContainers = await containersOf();
  let leftSandboxDirs = 0;
  try {
    leftSandboxDirs = readdirSync(join(dir, 'runtime', 'sandboxes')).length;
  } catch {
    leftSandboxDirs = 0;
  }
  const sorted = latencies.sort((a, b) => a - b);
  const rssWarmMiB = medianOf(rssWarm);
  const rssEndMiB = medianOf(rssEnd);
  const result: SoakResult = {
    mode,
    seconds,
    callers,
    plugins: plugins.length,
    requests: answered,
    failures,
    failureSamples,
    p50Ms: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
    p99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    rssWarmMiB,
    rssEndMiB,
    rssGrowth: rssWarmMiB > 0 ? rssEndMiB / rssWarmMiB - 1 : 0,
    fdsWarm,
    fdsEnd,
    sandboxesMax,
    leftProcesses,
    leftContainers,
    leftSandboxDirs,
    serverExit,
    ...(diedAtMs === undefined ? {} : { diedAtMs }),
    loadAverage: loadavg()[0] as number,
    perPlugin: Object.fromEntries(
      [...perPlugin].map(([id, c]) => [
        id,
        {
          ok: c.ok,
          failed: c.failed,
          p50Ms: percentile(c.all, 0.5),
          p99Ms: percentile(c.all, 0.99),
          okP50Ms: percentile(c.okTimes, 0.5),
        },
      ]),
    ),
    faults,
    rssSamplesMiB: samples.map((x) => x.rss),
  };
  // A failure's explanation is in serve's log: kept (its last MiB) in a file of its own, the rest is removed.
  if (Object.keys(failures).length > 0 || serverExit !== '0' || diedAtMs !== undefined)
    result.logFile = tail.save(mode);
  rmSync(dir, { recursive: true, force: true });
  return result;
}

const TABLE_HEADER = [
  'mode',
  'duration',
  'callers / plugins',
  'requests (per s)',
  'failed',
  'p50 / p99',
  'RSS after warm-up -> end',
  'fds after warm-up -> end',
  'processes / containers (most)',
  'left after stop',
  'load',
];

export function soakRow(r: SoakResult): string[] {
  const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
  return [
    r.mode === 'container' ? 'container (runc)' : r.mode,
    `${r.seconds} s`,
    `${r.callers} / ${r.plugins}`,
    `${r.requests.toLocaleString('en-US')} (${Math.round(r.requests / r.seconds).toLocaleString('en-US')})`,
    String(failed),
    `${r.p50Ms.toFixed(1)} / ${r.p99Ms.toFixed(1)} ms`,
    `${r.rssWarmMiB.toFixed(0)} -> ${r.rssEndMiB.toFixed(0)} MiB (${r.rssGrowth >= 0 ? '+' : ''}${(r.rssGrowth * 100).toFixed(1)} %)`,
    `${r.fdsWarm} -> ${r.fdsEnd}`,
    String(r.sandboxesMax),
    `${r.leftProcesses} processes, ${r.leftContainers} containers, ${r.leftSandboxDirs} dirs`,
    r.loadAverage.toFixed(1),
  ];
}

export function markdownTable(rows: string[][]): string {
  const all = [TABLE_HEADER, ...rows];
  const widths = TABLE_HEADER.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(TABLE_HEADER), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join(
    '\n',
  );
}

const DOC = join(REPO, 'docs/RELIABILITY.md');
const BEGIN = '<!-- soak:begin (written by npm run soak -- --write-doc) -->';
const END = '<!-- soak:end -->';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      modes: { type: 'string', default: 'none,process,container' },
      callers: { type: 'string', default: '64' },
      plugins: { type: 'string', default: '10' },
      'write-doc': { type: 'boolean', default: false },
    },
  });
  const seconds = Math.round(Number(values.minutes) * 60);
  const modes = String(values.modes).split(',') as SoakMode[];
  const rows: string[][] = [];
  let ok = true;
  for (const mode of modes) {
    console.log(`soak: ${mode}, ${seconds} s, ${values.callers} callers over ${values.plugins} plugins`);
    const result = await runSoak({
      mode,
      seconds,
      callers: Number(values.callers),
      plugins: Number(values.plugins),
      onTick: (answered, elapsed, rss) => {
        // The RSS beside the count: whether a growth is a trend (a leak) or where the collector happened to be.
        if (elapsed % 30 === 0)
          console.log(
            `  ${elapsed} s: ${answered.toLocaleString('en-US')} answered, RSS ${rss.toFixed(0)} MiB`,
          );
      },
    });
    rows.push(soakRow(result));
    const problems = soakProblems(result);
    for (const p of problems) console.log(`  NOT HELD: ${p}`);
    if (problems.length > 0) ok = false;
  }
  const table = markdownTable(rows);
  console.log(`\n${table}\n\n${ok ? 'every soak held' : 'a soak did not hold'}`);
  if (values['write-doc']) {
    const command = `npm run soak -- --minutes ${values.minutes} --modes ${values.modes} --callers ${values.callers} --plugins ${values.plugins} --write-doc`;
    const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
    const block = `${BEGIN}\n\`${command}\` on ${when} UTC (load average at the end of each mode in the last column; 2 cores):\n\n${table}\n${END}`;
    const doc = readFileSync(DOC, 'utf8');
    const start = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    if (start < 0 || end < start) throw new Error(`${DOC}: the soak markers are missing`);
    writeFileSync(DOC, doc.slice(0, start) + block + doc.slice(end + END.length));
    console.log(`written to ${DOC}`);
  }
  process.exitCode = ok ? 0 : 1;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main();
