// `npm run bench -- idle` (issue 16, part 2): the first call to a plugin scaled to zero (idle_timeout passed, its
// sandbox stopped), from the call to its answer, beside calls to the same plugin warm in the same run: mode none,
// process mode without a warm pool, and process mode with one ([sandbox.pool] process = 2) when this build has warm
// pools. Target: p50 <= 20 ms. Also the host's CPU per wake (process.cpuUsage: a loaded machine stretches the wall
// clock, less the CPU) and its p90. REED_BENCH_IDLE_WAKES sets the wakes per variant (default 25).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { subscribeEvent } from '../src/events/events.js';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import type { SandboxMode } from '../src/manifest/types.js';
import { fmt, median, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PLUGIN = 'example.hello';
const input = new Uint8Array(64).fill(120);
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] as number;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Variant {
  name: string;
  mode: SandboxMode;
  /** reed.toml lines beyond the idle_timeout. */
  toml: string;
  /** How long to let the host settle after the plugin idles (a warm pool refills in the background). */
  settleMs: number;
}

interface Figures {
  wakeMs: number[];
  /** Process mode: the runner's own start within each wake (reed:sandbox:started's startMs: taken or spawned to ready). */
  runnerStartMs: number[];
  wakeCpuMs: number[];
  warmMs: number[];
}

async function measure(dir: string, variant: Variant, wakes: number): Promise<Figures | string> {
  const home = mkdtempSync(join(dir, `${variant.name.replace(/\W+/g, '-')}-`));
  chmodSync(home, 0o755); // runners (as their own uids, under root) pass through it to their sockets
  writeFileSync(
    join(home, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "run"\n[sandbox]\nidle_timeout = "100ms"\n${variant.toml}`,
  );
  let config: ReturnType<typeof loadHostConfig>;
  try {
    config = loadHostConfig({
      cwd: home,
      env: {},
      home,
      overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
    });
  } catch (error) {
    return `not measured: ${(error as Error).message}`;
  }
  const host = await PluginHost.start({
    config,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: [PLUGIN],
    forceMode: variant.mode,
  });
  const figures: Figures = { wakeMs: [], runnerStartMs: [], wakeCpuMs: [], warmMs: [] };
  let timing = false;
  const unsubscribe = subscribeEvent('reed:sandbox:started', (e) => {
    if (timing && e.session === host.session.id && e.startMs !== undefined)
      figures.runnerStartMs.push(e.startMs);
  });
  try {
    const idle = async () => {
      while (host.pluginStatus(PLUGIN).state !== 'idle') await sleep(10);
      await sleep(variant.settleMs);
    };
    // One untimed wake first: the compile cache, the plugin image, the pool's first runners.
    await idle();
    await host.call(PLUGIN, 'echo', input);
    for (let i = 0; i < wakes; i++) {
      await idle();
      const cpu = process.cpuUsage();
      timing = true;
      const t = performance.now();
      await host.call(PLUGIN, 'echo', input);
      figures.wakeMs.push(performance.now() - t);
      timing = false;
      const used = process.cpuUsage(cpu);
      figures.wakeCpuMs.push((used.user + used.system) / 1000);
      // Warm calls right after, to the same plugin (its idle_timeout is far from passing between them).
      for (let j = 0; j < 20; j++) {
        const w = performance.now();
        await host.call(PLUGIN, 'echo', input);
        figures.warmMs.push(performance.now() - w);
      }
    }
  } finally {
    unsubscribe();
    await host.close();
  }
  return figures;
}

export async function runIdleBench(): Promise<boolean> {
  const wakes = Number(process.env.REED_BENCH_IDLE_WAKES ?? 25);
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-idle-'));
  chmodSync(dir, 0o755);
  const variants: Variant[] = [
    { name: 'mode none', mode: 'none', toml: '', settleMs: 50 },
    { name: 'process mode, no pool', mode: 'process', toml: '', settleMs: 300 },
    {
      name: 'process mode, warm pool of 2',
      mode: 'process',
      toml: '[sandbox.pool]\nprocess = 2\n',
      settleMs: 1_500,
    },
  ];
  const rows: Row[] = [];
  try {
    for (const variant of variants) {
      const figures = await measure(dir, variant, wakes);
      if (typeof figures === 'string') {
        rows.push({
          figure: `${variant.name}: first call after idle`,
          value: figures,
          baseline: '',
          ratio: '',
          target: '',
        });
        continue;
      }
      const p50 = median(figures.wakeMs);
      const warm = median(figures.warmMs);
      rows.push(
        {
          figure: `${variant.name}: first call after idle, p50 (${wakes} wakes)`,
          value: `${fmt(p50, 2)} ms`,
          baseline: `${fmt(warm * 1000, 1)} us warm call (p50)`,
          ratio: `${fmt(p50 / warm, 0)}x`,
          target: '<= 20 ms',
          met: p50 <= 20,
        },
        {
          figure: `${variant.name}: first call after idle, p90`,
          value: `${fmt(percentile(figures.wakeMs, 0.9), 2)} ms`,
          baseline: `${fmt(percentile(figures.warmMs, 0.9) * 1000, 1)} us warm (p90)`,
          ratio: '',
          target: '',
        },
        ...(figures.runnerStartMs.length === 0
          ? []
          : [
              {
                figure: `${variant.name}: the runner's start within the wake, p50`,
                value: `${fmt(median(figures.runnerStartMs), 2)} ms`,
                baseline: 'reed:sandbox:started startMs',
                ratio: '',
                target: '',
              },
            ]),
        {
          figure: `${variant.name}: host CPU per wake, p50`,
          value: `${fmt(median(figures.wakeCpuMs), 2)} ms`,
          baseline: '',
          ratio: '',
          target: '',
        },
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable('scale to zero: first call to an idle plugin', rows);
  return rows.every((r) => r.met !== false);
}
