// Metrics cost (issue 15): mode none's awaited host.call of the 64-byte echo with a ReedMetrics registry
// subscribed (every call then reads the clock, publishes reed:call:finished and adds to its series) against none,
// in one run: alternating batches, so both see the same machine. Target: at most +10 %.
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
const BATCH = 20_000;
const PAIRS = 12;

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
    const batch = async () => {
      const t = performance.now();
      for (let i = 0; i < BATCH; i++) await host.call('example.hello', 'echo', input);
      return ((performance.now() - t) * 1000) / BATCH;
    };
    const on: number[] = [];
    const off: number[] = [];
    const ratios: number[] = [];
    await batch();
    for (let p = 0; p < PAIRS; p++) {
      // Each switch changes the channel's subscribers, and V8 re-optimizes the call path: an untimed batch first.
      await batch();
      const without = await batch();
      const metrics = new ReedMetrics({ targets: () => [{ tenant: 'default', host }] });
      await batch();
      const withMetrics = await batch();
      // A scrape now and then, as Prometheus would (outside the timed batch).
      if (p % 10 === 0) await metrics.text();
      metrics.close();
      off.push(without);
      on.push(withMetrics);
      ratios.push(withMetrics / without);
    }
    await host.close();
    const ratio = median(ratios);
    printTable('Metrics cost (mode none, host.call awaited, 64 B echo)', [
      {
        figure: 'host.call() awaited, metrics on',
        value: `${fmt(median(on), 3)} us`,
        baseline: `${fmt(median(off), 3)} us metrics off`,
        ratio: `${fmt(ratio, 3)}x (median of ${PAIRS} pairs)`,
        target: '<= 1.10x',
        met: ratio <= 1.1,
      },
    ]);
    return ratio <= 1.1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
