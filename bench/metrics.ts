// Metrics cost (issue 15): mode none's awaited host.call of the 64-byte echo with a ReedMetrics registry
// subscribed (every call then reads the clock, publishes reed:call:finished and adds to its series) against none,
// in one run: alternating rounds, so both see the same machine. Judged in CPU time per call (process.cpuUsage),
// which another process taking the CPU in the middle of a round does not move as it moves wall-clock time.
// Target: at most +10 %.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { ReedMetrics } from '../src/server/metrics.js';
import { fmt, median, printTable } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BATCH = Number(process.env.REED_BENCH_METRICS_BATCH ?? 20_000);
const ROUNDS = Number(process.env.REED_BENCH_METRICS_ROUNDS ?? 16);
const TARGET = 1.1;

interface Times {
  wall: number;
  cpu: number;
}

export async function runMetricsBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-metrics-'));
  try {
    const config = loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
    });
    const host = await PluginHost.start({
      config,
      plugins: ['example.hello'],
      forceMode: 'none',
      logger: pino({ level: 'silent' }),
      services: { storage: new MemoryStorage() },
    });
    const input = new Uint8Array(64).fill(120);
    /** Microseconds per call, wall-clock and this process's CPU time. */
    const batch = async (): Promise<Times> => {
      const c = process.cpuUsage();
      const t = performance.now();
      for (let i = 0; i < BATCH; i++) await host.call('example.hello', 'echo', input);
      const wall = ((performance.now() - t) * 1000) / BATCH;
      const used = process.cpuUsage(c);
      return { wall, cpu: (used.user + used.system) / BATCH };
    };
    const on: Times[] = [];
    const off: Times[] = [];
    await batch();
    console.log(`\nmetrics cost: ${ROUNDS} rounds of ${BATCH} calls each way, off then on (us per call)`);
    for (let r = 0; r < ROUNDS; r++) {
      // Each switch changes the channel's subscribers, and V8 re-optimizes the call path: an untimed batch first.
      await batch();
      const without = await batch();
      const metrics = new ReedMetrics({ targets: () => [{ tenant: 'default', host }] });
      await batch();
      const withMetrics = await batch();
      // A scrape now and then, as Prometheus would (outside the timed batches).
      if (r % 4 === 0) await metrics.text();
      metrics.close();
      off.push(without);
      on.push(withMetrics);
      console.log(
        `  round ${String(r + 1).padStart(2)}: off CPU ${fmt(without.cpu, 3)} (wall ${fmt(without.wall, 3)}), on CPU ${fmt(withMetrics.cpu, 3)} (wall ${fmt(withMetrics.wall, 3)}): ${fmt(withMetrics.cpu / without.cpu, 3)}x CPU, ${fmt(withMetrics.wall / without.wall, 3)}x wall`,
      );
    }
    await host.close();
    const cpuRatio = median(on.map((t, i) => t.cpu / (off[i] as Times).cpu));
    const wallRatio = median(on.map((t, i) => t.wall / (off[i] as Times).wall));
    const met = cpuRatio <= TARGET;
    printTable('Metrics cost (mode none, host.call awaited, 64 B echo)', [
      {
        figure: 'host.call() awaited, metrics on: CPU',
        value: `${fmt(median(on.map((t) => t.cpu)), 3)} us`,
        baseline: `${fmt(median(off.map((t) => t.cpu)), 3)} us metrics off`,
        ratio: `${fmt(cpuRatio, 3)}x (median of ${ROUNDS} rounds' ratios)`,
        target: `<= ${fmt(TARGET, 2)}x`,
        met,
      },
      {
        figure: 'host.call() awaited, metrics on: wall',
        value: `${fmt(median(on.map((t) => t.wall)), 3)} us`,
        baseline: `${fmt(median(off.map((t) => t.wall)), 3)} us metrics off`,
        ratio: `${fmt(wallRatio, 3)}x (median of ${ROUNDS} rounds' ratios)`,
        target: `(judged on a quiet machine: <= ${fmt(TARGET, 2)}x)`,
      },
    ]);
    return met;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
