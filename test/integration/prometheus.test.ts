// A real Prometheus server (Debian's `prometheus`, installed by scripts/setup.sh) scrapes `reed-plugins serve
// --metrics-listen` in each mode (none, process, container) while known calls, errors and a crash are made through
// the API; Prometheus's HTTP API then gives the same counts as the API's answers. Runs the built CLI (npm run
// build); container mode needs the Docker engine. Without the prometheus binary this test fails.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxMode } from '../../src/manifest/types.js';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';

const MODES: SandboxMode[] = ['none', 'process', 'container'];
/** The plugins each mode serves: a WASM one with ok and error calls, and one that crashes its sandbox. */
const CRASHER: Record<SandboxMode, { dir: string; id: string; fn: string }> = {
  // Mode none has no sandbox to crash: a trap is its failure, the instance recycled.
  none: { dir: join(REPO, 'test/fixtures/hostile'), id: 'hostile.out-of-bounds', fn: 'log' },
  process: { dir: join(REPO, 'test/fixtures/native-process'), id: 'proc.segfault', fn: 'attack' },
  container: { dir: join(REPO, 'test/fixtures/native-process'), id: 'proc.segfault', fn: 'attack' },
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

const servers = new Map<SandboxMode, { serve: ServeProcess; port: number }>();
let prometheus: ChildProcess | undefined;
let promPort = 0;
let promLog = '';
/** What the API answered: mode -> plugin -> code -> count. */
const expected = new Map<string, number>();
const tally = (mode: string, plugin: string, code: string) => {
  const key = `${mode}|${plugin}|${code}`;
  expected.set(key, (expected.get(key) ?? 0) + 1);
};

async function query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; data: { result: never[] } };
  expect(body.status).toBe('success');
  return body.data.result;
}

/** Polls until `check` holds (each scrape is a second apart); the test's own timeout bounds the wait. */
async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  const which = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  expect(which.error, 'the prometheus binary (Debian package prometheus, scripts/setup.sh)').toBeUndefined();
  for (const mode of MODES) {
    const dir = lastingDir(`reed-prom-${mode}-`);
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n[signatures]\nrequire = "none"\n',
    );
    const serve = await startServe(dir, [
      '--plugin-dir',
      join(REPO, 'examples/plugins'),
      '--plugin-dir',
      CRASHER[mode].dir,
      '--plugin',
      'example.hello',
      '--plugin',
      CRASHER[mode].id,
      '--mode',
      mode,
      '--metrics-listen',
      '127.0.0.1:0',
    ]);
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(serve.stderr())?.[1]);
    servers.set(mode, { serve, port });
  }
  const dir = lastingDir('reed-prometheus-');
  const targets = [...servers].map(
    ([mode, s]) => `      - targets: ['127.0.0.1:${s.port}']\n        labels: { reed_mode: '${mode}' }`,
  );
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: reed\n    static_configs:\n${targets.join('\n')}\n`,
  );
  promPort = await freePort();
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prometheus.stderr?.on('data', (c: Buffer) => {
    promLog = (promLog + c.toString()).slice(-8000);
  });
  await eventually(
    () =>
      fetch(`http://127.0.0.1:${promPort}/-/ready`).then(
        (r) => r.status,
        () => 0,
      ),
    (status) => status === 200,
  );
}, 600_000);

afterAll(async () => {
  prometheus?.kill('SIGTERM');
  for (const { serve } of servers.values()) {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
}, 120_000);

describe('Prometheus scraping serve in each mode', () => {
  it('finds the counts of the calls, errors and crashes the API answered', async () => {
    for (const mode of MODES) {
      const { serve } = servers.get(mode) as { serve: ServeProcess };
      const call = async (plugin: string, fn: string) => {
        const r = await api(serve.socket, 'POST', `/v1/plugins/${plugin}/call/${fn}`, 'x');
        tally(mode, plugin, r.body.ok ? 'ok' : String(r.body.error?.code));
        return r;
      };
      for (let i = 0; i < 4; i++) expect((await call('example.hello', 'greet')).status).toBe(200);
      expect((await call('example.hello', 'nothing')).body.error?.code).toBe('function_not_found');
      const crash = await call(CRASHER[mode].id, CRASHER[mode].fn);
      expect(crash.body.ok).toBe(false);
      if (mode !== 'none') expect(crash.body.error?.code).toBe('sandbox_crashed');
    }
    const want = [...expected].map(([key, n]) => {
      const [mode, plugin, code] = key.split('|') as [string, string, string];
      return { mode, plugin, code, n };
    });
    const promql = 'sum by (reed_mode, plugin, code) (reed_calls_total)';
    const seen = await eventually(
      () => query(promql),
      (result) =>
        want.every((w) =>
          result.some(
            (r) =>
              r.metric.reed_mode === w.mode &&
              r.metric.plugin === w.plugin &&
              r.metric.code === w.code &&
              Number(r.value[1]) === w.n,
          ),
        ),
    );
    // Nothing Prometheus holds that the API did not answer.
    expect(seen.reduce((sum, r) => sum + Number(r.value[1]), 0)).toBe(want.reduce((sum, w) => sum + w.n, 0));
    // One crash of the crashing plugin's sandbox in process and container modes, and a restart after it.
    const crashes = await eventually(
      () => query('sum by (reed_mode) (reed_sandbox_crashes_total{plugin="proc.segfault"})'),
      (result) => result.length === 2 && result.every((r) => Number(r.value[1]) === 1),
    );
    expect(crashes.map((r) => r.metric.reed_mode).sort()).toEqual(['container', 'process']);
    const starts = await eventually(
      () => query('sum by (reed_mode, reason) (reed_sandbox_starts_total{plugin="example.hello"})'),
      (result) => result.length === 3,
    );
    for (const r of starts) expect([r.metric.reason, Number(r.value[1])]).toEqual(['first_load', 1]);
    // Memory per sandbox: the WASM memory in mode none, the runner's cgroup in process and container modes; CPU
    // from the container's cgroup.
    const memory = await eventually(
      () => query('sum by (reed_mode) (reed_sandbox_memory_bytes{plugin="example.hello"})'),
      (result) => result.length === 3,
    );
    for (const r of memory) expect(Number(r.value[1])).toBeGreaterThanOrEqual(65536);
    const cpu = await query('sum by (reed_mode) (reed_sandbox_cpu_seconds_total{plugin="example.hello"})');
    expect(cpu.find((r) => r.metric.reed_mode === 'container')?.value[1]).toBeDefined();
    expect(promLog).not.toMatch(/level=error/);
  }, 300_000);
});
