// `npm run bench -- scale-process [--plugins N] [--minutes M]` (issue 16, item 5): N plugins in process mode
// under `reed-plugins serve`, each called about once a minute through the HTTP API (the calls spread evenly over
// the minute), for M minutes after every plugin has answered once. Reports the memory of the host and every runner
// (PSS: the serve process and all its descendants, bwrap included) and the call latency (p50, p99: from sending
// the request to its answer, and from when the call was due). Target, for 1,000 plugins: under 8 GiB, p99 under
// 50 ms. Baseline, in the same run: the same N plugins in mode none (one process, no runner), so that what the
// runners cost is the difference; for a smaller N the figure for 1,000 is projected from the measured per-runner
// PSS (the difference over N), since each runner is a process of its own and the host's part grows little per
// plugin. Default N = 40 and 2 minutes, so that `npm run bench` stays short; the target run is `--plugins 1000`.
// Every plugin is a copy of example.hello (a WASM echo without host calls) under its own id; `idle_timeout` is
// off (with one call a minute, any timeout over a minute keeps every runner anyway) and there is no warm pool.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { descendants } from './processes.js';
import { fmt, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TARGET_PLUGINS = 1_000;
const TARGET_PSS = 8 * 2 ** 30;
const TARGET_P99_MS = 50;
const PERIOD_MS = Number(process.env.REED_BENCH_SCALE_PROCESS_PERIOD_MS ?? 60_000);
const INPUT = 'x'.repeat(64);
/** How long the calls run between two memory samples (they pause while one is taken). */
const SAMPLE_EVERY_MS = 20_000;
const SOURCE = join(REPO, 'examples/plugins/hello');

function option(name: string, fallback: number): number {
  const args = process.argv.slice(2);
  const at = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return fallback;
  const value = Number(args[at]?.includes('=') ? args[at]?.split('=')[1] : args[at + 1]);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`--${name}: a positive number, not ${args[at + 1]}`);
  return value;
}

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] as number;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => `${fmt(bytes / 2 ** 20, 1)} MiB`;

/** N copies of example.hello, ids bench.p0 .. bench.p(N-1). */
function generate(root: string, count: number): string[] {
  const toml = readFileSync(join(SOURCE, 'plugin.toml'), 'utf8');
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `bench.p${i}`;
    const dir = join(root, `p${i}`);
    mkdirSync(dir);
    cpSync(join(SOURCE, 'plugin.wasm'), join(dir, 'plugin.wasm'));
    writeFileSync(join(dir, 'plugin.toml'), toml.replace('id = "example.hello"', `id = "${id}"`));
    ids.push(id);
  }
  return ids;
}

/** PSS (bytes) of a process and all its descendants (taken while no call is in flight: measure's phases). */
async function treePss(root: number): Promise<{ total: number; processes: number }> {
  const pids = [root, ...descendants(root)];
  let kb = 0;
  await Promise.all(
    pids.map(async (pid) => {
      try {
        const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
        kb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      } catch {
        // gone meanwhile
      }
    }),
  );
  return { total: kb * 1024, processes: pids.length };
}

/** Starts serve and resolves once it says `serving` on stderr (however long the plugins take to start). */
async function startServe(
  dir: string,
  pluginDir: string,
  socket: string,
  mode: string,
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      join(REPO, 'bin/reed-plugins.js'),
      'serve',
      '--socket',
      socket,
      '--no-default-paths',
      '--plugin-dir',
      pluginDir,
      '--mode',
      mode,
    ],
    {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, REED_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => {
      err = (err + c.toString()).slice(-64 * 1024);
      if (err.includes('serving')) resolve();
    });
    child.once('exit', (code) =>
      reject(new Error(`serve (${mode}) exited with ${code}: ${err.slice(-2000)}`)),
    );
  });
  return child;
}

/** One call through the API; resolves with its time in ms, rejects on anything but 200. */
function call(agent: Agent, socketPath: string, id: string): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        agent,
        method: 'POST',
        path: `/v1/plugins/${id}/call/echo`,
        headers: { host: 'localhost' },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          if (body.length < 4096) body += c.toString();
        });
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(performance.now() - t)
            : reject(new Error(`${id}: ${res.statusCode} ${body.slice(0, 300)}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(INPUT);
  });
}

interface Run {
  startMs: number;
  /** Send to answer, ms. */
  latency: number[];
  /** Due to answer, ms (includes this process's own lateness in sending). */
  fromDue: number[];
  /** Memory samples during the paced calls: host and every runner. */
  pss: number[];
  processes: number;
  hostPss: number;
  load: number[];
  /** Calls that failed (warm-up and paced), their errors. */
  failed: string[];
}

async function measure(
  dir: string,
  pluginDir: string,
  ids: string[],
  mode: string,
  ms: number,
): Promise<Run> {
  const socket = join(dir, `${mode}.sock`);
  const home = join(dir, mode);
  mkdirSync(home);
  chmodSync(home, 0o755); // runners (as their own uids, under root) pass through it to their sockets
  writeFileSync(
    join(home, 'reed.toml'),
    'runtime_dir = "run"\ncache_dir = "cache"\ndata_dir = "data"\n[sandbox]\nidle_timeout = "off"\n',
  );
  const t = performance.now();
  const serve = await startServe(home, pluginDir, socket, mode);
  const startMs = performance.now() - t;
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  try {
    // Every plugin answers once (a lazily started sandbox starts here), eight at a time. A call that fails is
    // counted and reported, not retried: the run goes on, and the bench says it missed.
    const failed: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < ids.length)
          await call(agent, socket, ids[next++] as string).catch((error: Error) =>
            failed.push(error.message),
          );
      }),
    );
    const run: Run = {
      startMs,
      latency: [],
      fromDue: [],
      pss: [],
      processes: 0,
      hostPss: 0,
      load: [],
      failed,
    };
    // The calls run in phases of SAMPLE_EVERY_MS; between two phases the calls pause (none in flight) and the memory
    // is sampled. Sampling beside the calls skewed them: reading every process's smaps_rollup (3,000 processes for
    // 1,000 plugins: seconds of kernel time on 2 cores, and thousands of callbacks on this process's loop) made the
    // slowest calls the ones that overlapped a sample. The runners' memory does not move while the calls pause.
    const gap = PERIOD_MS / ids.length;
    const total = Math.max(1, Math.floor(ms / gap));
    const perPhase = Math.max(1, Math.floor(SAMPLE_EVERY_MS / gap));
    for (let k = 0; k < total; ) {
      const t0 = performance.now();
      const inFlight: Promise<void>[] = [];
      for (let j = 0; j < perPhase && k < total; j++, k++) {
        const due = t0 + j * gap;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        inFlight.push(
          call(agent, socket, ids[k % ids.length] as string).then(
            (latency) => {
              run.latency.push(latency);
              run.fromDue.push(performance.now() - due);
            },
            (error: Error) => void failed.push(error.message),
          ),
        );
      }
      await Promise.all(inFlight);
      const m = await treePss(serve.pid as number);
      run.pss.push(m.total);
      run.processes = m.processes;
      run.load.push(loadavg()[0] as number);
    }
    const rollup = await readFile(`/proc/${serve.pid}/smaps_rollup`, 'utf8');
    run.hostPss = Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) * 1024;
    return run;
  } finally {
    agent.destroy();
    serve.kill('SIGTERM');
    await new Promise((r) => serve.once('exit', r));
  }
}

export async function runScaleProcessBench(): Promise<boolean> {
  const plugins = option('plugins', Number(process.env.REED_BENCH_SCALE_PROCESS_PLUGINS ?? 40));
  const minutes = option('minutes', Number(process.env.REED_BENCH_SCALE_PROCESS_MINUTES ?? 2));
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-scale-process-'));
  chmodSync(dir, 0o755);
  try {
    const pluginDir = join(dir, 'plugins');
    mkdirSync(pluginDir);
    const ids = generate(pluginDir, plugins);
    // The baseline first, shorter: its memory and latency do not move over the run.
    const none = await measure(dir, pluginDir, ids, 'none', Math.min(PERIOD_MS / 2, minutes * 60_000));
    const proc = await measure(dir, pluginDir, ids, 'process', minutes * 60_000);
    const peak = Math.max(...proc.pss);
    const nonePeak = Math.max(...none.pss);
    const perRunner = (peak - nonePeak) / plugins;
    const projected = nonePeak + perRunner * TARGET_PLUGINS;
    const p99 = percentile(proc.latency, 0.99);
    const atTarget = plugins >= TARGET_PLUGINS;
    const rows: Row[] = [
      {
        figure: `${fmt(plugins)} plugins, host + every runner, PSS (peak of ${proc.pss.length} samples; ${fmt(proc.processes)} processes)`,
        value: mib(peak),
        baseline: `${mib(nonePeak)} mode none, same plugins`,
        ratio: `${fmt(perRunner / 2 ** 20, 2)} MiB per runner`,
        target: atTarget ? '< 8,192 MiB' : '',
        ...(atTarget ? { met: peak < TARGET_PSS } : {}),
      },
      {
        figure: `  of which the host process (serve)`,
        value: mib(proc.hostPss),
        baseline: mib(none.hostPss),
        ratio: '',
        target: '',
      },
      ...(atTarget
        ? []
        : [
            {
              figure: `  projected for ${fmt(TARGET_PLUGINS)} plugins (mode none + ${fmt(TARGET_PLUGINS)} x per runner)`,
              value: mib(projected),
              baseline: '',
              ratio: '',
              target: '< 8,192 MiB',
              met: projected < TARGET_PSS,
            },
          ]),
      {
        figure: `call latency, each plugin once a ${fmt(PERIOD_MS / 1000)} s, ${fmt(proc.latency.length)} calls: p50 / p99`,
        value: `${fmt(percentile(proc.latency, 0.5), 2)} / ${fmt(p99, 2)} ms`,
        baseline: `${fmt(percentile(none.latency, 0.5), 2)} / ${fmt(percentile(none.latency, 0.99), 2)} ms mode none`,
        ratio: `${fmt(p99 / percentile(none.latency, 0.99), 2)}x`,
        target: `p99 < ${TARGET_P99_MS} ms`,
        met: p99 < TARGET_P99_MS,
      },
      {
        figure: '  from when each call was due: p50 / p99 / max',
        value: `${fmt(percentile(proc.fromDue, 0.5), 2)} / ${fmt(percentile(proc.fromDue, 0.99), 2)} / ${fmt(Math.max(...proc.fromDue), 1)} ms`,
        baseline: `${fmt(percentile(none.fromDue, 0.99), 2)} ms p99 mode none`,
        ratio: '',
        target: '',
      },
      {
        figure: '  calls that failed (warm-up and paced)',
        value: `${fmt(proc.failed.length)}${proc.failed.length > 0 ? `: ${proc.failed[0]?.slice(0, 200)}` : ''}`,
        baseline: `${fmt(none.failed.length)} mode none`,
        ratio: '',
        target: '0',
        met: proc.failed.length === 0 && none.failed.length === 0,
      },
      {
        figure: '  serve start, every plugin loaded',
        value: `${fmt(proc.startMs / 1000, 1)} s`,
        baseline: `${fmt(none.startMs / 1000, 1)} s mode none`,
        ratio: '',
        target: '',
      },
      {
        figure: '  load average (1 min) during the calls',
        value: `${fmt(Math.min(...proc.load), 1)}-${fmt(Math.max(...proc.load), 1)}`,
        baseline: '',
        ratio: '',
        target: '',
      },
    ];
    printTable(
      `scale-process: ${fmt(plugins)} plugins in process mode under serve, each called once a ${fmt(PERIOD_MS / 1000)} s for ${fmt(minutes, 1)} min`,
      rows,
    );
    return rows.every((r) => r.met !== false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
