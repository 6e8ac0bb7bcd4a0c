// `npm run bench -- pool` (issue 16, part 1): load to ready in process mode (PluginHost.add of example.hello: plan,
// prepare through the compile cache, the runner, the Welcome, init) from a warm pool ([sandbox.pool] process = 2),
// beside the same load started fresh by a host without a pool, alternating in one run; then the same in container
// mode ([sandbox.pool] runc = 2: a warm container handed out, against a fresh container; example.hello has the
// host's limits, so its hand-out needs no engine update, only the rename). Target: p50 <= 10 ms from
// the pool. Also the host's CPU per load (process.cpuUsage: a loaded machine stretches the wall clock, less the
// CPU; the runner's own start is not in it: a fresh runner's is paid during the load, a warm one's before it).
// Also the runner's own part of each load (reed:sandbox:started's startMs: the runner taken or spawned, to its
// Ready), which the host's steps before it (plan, the compile cache) and after it (status, events) are not in.
// REED_BENCH_POOL_LOADS sets the loads per variant in process mode (default 20), REED_BENCH_POOL_CONTAINER_LOADS in
// container mode (default 10).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { poolsOf, type WarmPool, type WarmRunner } from '../src/backends/pool/warm-pool.js';
import { subscribeEvent } from '../src/events/events.js';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { fmt, median, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PLUGIN = 'example.hello';
const TARGET_MS = 10;
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] as number;

type Mode = 'process' | 'container';

async function startHost(dir: string, name: string, toml: string, mode: Mode): Promise<PluginHost> {
  const home = mkdtempSync(join(dir, `${name}-`));
  chmodSync(home, 0o755); // runners (as their own uids, under root) pass through it to their sockets
  writeFileSync(
    join(home, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "run"\n${toml}`,
  );
  const config = loadHostConfig({
    cwd: home,
    env: {},
    home,
    overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
  });
  return PluginHost.start({
    config,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: [],
    forceMode: mode,
  });
}

/** One load to ready and its removal; the load's wall clock and the host's CPU, in ms. */
async function load(host: PluginHost): Promise<{ ms: number; cpuMs: number }> {
  const candidate = host.scan.order.load.find((c) => c.id === PLUGIN);
  if (candidate === undefined) throw new Error(`${PLUGIN} not found`);
  const cpu = process.cpuUsage();
  const t = performance.now();
  const status = await host.add(candidate);
  const ms = performance.now() - t;
  const used = process.cpuUsage(cpu);
  if (status.state !== 'ready') throw new Error(`${PLUGIN} did not load: ${JSON.stringify(status.error)}`);
  await host.remove(PLUGIN);
  return { ms, cpuMs: (used.user + used.system) / 1000 };
}

interface Figures {
  fresh: number[];
  freshCpu: number[];
  freshStart: number[];
  pool: number[];
  poolCpu: number[];
  poolStart: number[];
}

/** `loads` loads to ready from a host with a warm pool (`poolToml`), alternating with a host without one. */
async function measure(dir: string, mode: Mode, poolToml: string, loads: number): Promise<Figures> {
  const fresh = await startHost(dir, `${mode}-fresh`, '', mode);
  const pooled = await startHost(dir, `${mode}-pooled`, `[sandbox.pool]\n${poolToml}ttl = "10m"\n`, mode);
  const pool = poolsOf(pooled.session.id)[0] as WarmPool<WarmRunner> | undefined;
  const figures: Figures = { fresh: [], freshCpu: [], freshStart: [], pool: [], poolCpu: [], poolStart: [] };
  let timing = false;
  const unsubscribe = subscribeEvent('reed:sandbox:started', (e) => {
    if (!timing || e.startMs === undefined) return;
    if (e.session === pooled.session.id) figures.poolStart.push(e.startMs);
    if (e.session === fresh.session.id) figures.freshStart.push(e.startMs);
  });
  try {
    if (pool === undefined) throw new Error('the pooled host has no warm pool');
    // Untimed: the compile cache (and in container mode the plugin's image), and the first runners of the pool.
    await load(fresh);
    await pool.filled();
    await load(pooled);
    const before = pool.stats.handedOut;
    timing = true;
    for (let i = 0; i < loads; i++) {
      const f = await load(fresh);
      figures.fresh.push(f.ms);
      figures.freshCpu.push(f.cpuMs);
      // A full pool, as a host that loads now and then has (it refills in the background between loads).
      await pool.filled();
      const p = await load(pooled);
      figures.pool.push(p.ms);
      figures.poolCpu.push(p.cpuMs);
    }
    if (pool.stats.handedOut - before !== loads)
      throw new Error(`only ${pool.stats.handedOut - before} of ${loads} loads were given a warm runner`);
    return figures;
  } finally {
    unsubscribe();
    await pooled.close();
    await fresh.close();
  }
}

function rows(mode: string, figures: Figures): Row[] {
  const p50 = median(figures.pool);
  const base = median(figures.fresh);
  return [
    {
      figure: `${mode}: load to ready from the warm pool, p50 (ms)`,
      value: fmt(p50, 1),
      baseline: `${fmt(base, 1)} fresh`,
      ratio: `${fmt(base / p50, 1)}x faster`,
      target: `<= ${TARGET_MS}`,
      met: p50 <= TARGET_MS,
    },
    {
      figure: `${mode}: load to ready from the warm pool, p90 (ms)`,
      value: fmt(percentile(figures.pool, 0.9), 1),
      baseline: `${fmt(percentile(figures.fresh, 0.9), 1)} fresh`,
      ratio: '',
      target: '',
    },
    {
      figure: `${mode}: the runner's part: taken (or started) to Ready, p50 (ms)`,
      value: fmt(median(figures.poolStart), 1),
      baseline: `${fmt(median(figures.freshStart), 1)} fresh`,
      ratio: '',
      target: '',
    },
    {
      figure: `${mode}: host CPU per load, p50 (ms; the runner's own start not counted)`,
      value: fmt(median(figures.poolCpu), 2),
      baseline: `${fmt(median(figures.freshCpu), 2)} fresh`,
      ratio: '',
      target: '',
    },
  ];
}

export async function runPoolBench(): Promise<boolean> {
  const loads = Number(process.env.REED_BENCH_POOL_LOADS ?? 20);
  const containerLoads = Number(process.env.REED_BENCH_POOL_CONTAINER_LOADS ?? 10);
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-pool-'));
  chmodSync(dir, 0o755);
  const table: Row[] = [];
  let met = true;
  try {
    for (const [mode, toml, n] of [
      ['process', 'process = 2\n', loads],
      ['container', 'runc = 2\n', containerLoads],
    ] as const) {
      try {
        const figures = await measure(dir, mode, toml, n);
        table.push(...rows(mode === 'container' ? 'container (runc)' : mode, figures));
        met &&= median(figures.pool) <= TARGET_MS;
      } catch (error) {
        console.log(`\n## pool, ${mode}: not measured: ${(error as Error).message}`);
        met = false;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(
    `pool (${loads} loads each in process mode, ${containerLoads} in container mode, alternating; example.hello)`,
    table,
  );
  return met;
}
