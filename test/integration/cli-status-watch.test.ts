// reed-plugins status --watch (issue 15, point 3): the rows from two scrapes of the metrics (rates, p50/p99 from the
// duration histogram, errors, restarts, memory), and the built CLI against a running serve: frames redrawn in place,
// one JSON line per refresh with --json. Runs the built CLI (npm run build).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSamples } from '../../src/cli/prom-text.js';
import { quantileMs, type WatchRow, watchRows } from '../../src/cli/status-watch.js';
import { publish } from '../../src/events/events.js';
import type { PluginStatus } from '../../src/host/plugin-status.js';
import { ReedMetrics } from '../../src/server/metrics.js';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO, runCli } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';

const status = (id: string): PluginStatus => ({
  id,
  version: '1.0.0',
  type: 'wasm',
  mode: 'process',
  state: 'ready',
  crashes: 0,
  history: [],
});

describe('the rows of status --watch', () => {
  it('rates, quantiles, errors and restarts over the interval between two scrapes', async () => {
    const metrics = new ReedMetrics({ targets: () => [], sessions: (s) => s === 'watch-test' });
    try {
      const call = (durationMs: number, code: 'ok' | 'call_timeout') =>
        publish('reed:call:finished', {
          session: 'watch-test',
          pluginId: 'p',
          mode: 'process',
          fn: 'f',
          code,
          durationMs,
          fuelConsumed: 0,
        });
      for (let i = 0; i < 5; i++) call(0.3, 'ok');
      const before = parseSamples(await metrics.text());
      // 18 calls of 2 ms, 2 timeouts of 7 s, one restart.
      for (let i = 0; i < 18; i++) call(2, 'ok');
      call(7000, 'call_timeout');
      call(7000, 'call_timeout');
      publish('reed:sandbox:started', {
        session: 'watch-test',
        pluginId: 'p',
        mode: 'process',
        pid: 1,
        restart: true,
        startMs: 50,
        enforced: [],
        notEnforced: [],
      });
      const now = parseSamples(await metrics.text());
      const [first] = watchRows([status('p')], before, undefined, 0);
      expect(first).toMatchObject({ id: 'p', callsPerSecond: null, p50Ms: null, restarts: 0 });
      const [row] = watchRows([status('p'), status('q')], now, before, 4) as [WatchRow, WatchRow];
      expect(row.callsPerSecond).toBe(5);
      expect(row.errorsPerSecond).toBe(0.5);
      expect(row.restarts).toBe(1);
      // The 10th of 20: in the (1 ms, 2.5 ms] bucket; the 19.8th: in (5 s, 10 s].
      expect(row.p50Ms).toBeGreaterThan(1);
      expect(row.p50Ms).toBeLessThanOrEqual(2.5);
      expect(row.p99Ms).toBeGreaterThan(5000);
      expect(row.p99Ms).toBeLessThanOrEqual(10000);
      expect(watchRows([status('q')], now, before, 4)[0]).toMatchObject({ callsPerSecond: 0, p50Ms: null });
    } finally {
      metrics.close();
    }
  });

  it('quantiles as Prometheus computes them: linear within the bucket', () => {
    expect(
      quantileMs(0.5, [
        [0.001, 0],
        [0.002, 10],
        [Number.POSITIVE_INFINITY, 10],
      ]),
    ).toBeCloseTo(1.5);
    expect(
      quantileMs(0.5, [
        [0.001, 0],
        [Number.POSITIVE_INFINITY, 0],
      ]),
    ).toBeNull();
    expect(
      quantileMs(0.99, [
        [0.001, 5],
        [Number.POSITIVE_INFINITY, 10],
      ]),
    ).toBe(1);
  });
});

describe('reed-plugins status --watch against a running serve', () => {
  let server: ServeProcess;
  beforeAll(async () => {
    const dir = lastingDir('reed-cli-watch-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n',
    );
    server = await startServe(dir, [
      '--plugin-dir',
      join(REPO, 'examples/plugins'),
      '--plugin',
      'example.hello',
      '--mode',
      'none',
    ]);
    for (let i = 0; i < 3; i++) await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greet', 'x');
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  it('--json: one line per refresh, rates from the second on', () => {
    const r = runCli([
      'status',
      '--socket',
      server.socket,
      '--watch',
      '--interval',
      '0.1',
      '--count',
      '3',
      '--json',
    ]);
    expect(r.status).toBe(0);
    const frames = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { plugins: WatchRow[] });
    expect(frames).toHaveLength(3);
    expect(frames[0]?.plugins).toEqual([
      expect.objectContaining({ id: 'example.hello', state: 'ready', mode: 'none', callsPerSecond: null }),
    ]);
    const last = frames[2]?.plugins[0] as WatchRow;
    expect(last.callsPerSecond).toBe(0);
    expect(last.restarts).toBe(0);
    expect(last.memoryBytes).toBeGreaterThanOrEqual(65536);
  });

  it('the table is redrawn in place', () => {
    const r = runCli(['status', '--socket', server.socket, '--watch', '--interval', '0.1', '--count', '2']);
    expect(r.status).toBe(0);
    const frames = r.stdout.split('\x1b[H\x1b[2J').slice(1);
    expect(frames).toHaveLength(2);
    for (const frame of frames) {
      expect(frame).toMatch(/ID\s+STATE\s+MODE\s+CALLS\/S\s+P50 MS\s+P99 MS\s+ERRORS\/S\s+RESTARTS\s+MEMORY/);
      expect(frame).toMatch(/example\.hello\s+ready\s+none/);
    }
    expect(runCli(['status', '--socket', server.socket, '--watch', '--interval', '0']).status).toBe(2);
  });
});
