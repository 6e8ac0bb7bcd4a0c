// GET /metrics of `reed-plugins serve` (issue 15): on the API socket (an admin route) and on --metrics-listen (plain
// HTTP on TCP, for Prometheus), the counts of known calls; the traceparent header; and every metric the Grafana
// dashboard (observability/grafana-dashboard.json) queries exists in the output. Runs the built CLI (npm run build).
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSamples, sampleMap } from '../../src/cli/prom-text.js';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';

const EXAMPLES = join(REPO, 'examples/plugins');

/** A GET's status, Content-Type and text, over the socket or TCP. */
function get(
  target: { socketPath: string } | { port: number },
  path: string,
): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { ...target, ...('port' in target ? { host: '127.0.0.1' } : {}), method: 'GET', path },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type']),
            text: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The metric names a dashboard's queries name. */
function dashboardMetrics(): string[] {
  const dashboard = JSON.parse(readFileSync(join(REPO, 'observability/grafana-dashboard.json'), 'utf8')) as {
    panels: { targets: { expr: string }[] }[];
  };
  const names = new Set<string>();
  for (const panel of dashboard.panels)
    for (const target of panel.targets)
      for (const m of target.expr.matchAll(/\breed_[a-z_]+/g)) names.add(m[0]);
  return [...names].sort();
}

describe('reed-plugins serve: GET /metrics', () => {
  let server: ServeProcess;
  let port: number;
  beforeAll(async () => {
    const dir = lastingDir('reed-serve-metrics-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n',
    );
    server = await startServe(dir, [
      '--plugin-dir',
      EXAMPLES,
      '--plugin',
      'example.hello',
      '--mode',
      'none',
      '--metrics-listen',
      '127.0.0.1:0',
    ]);
    port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(server.stderr())?.[1]);
    expect(port).toBeGreaterThan(0);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  it('counts known calls and errors, on the socket and on TCP alike; traceparent is checked', async () => {
    for (let i = 0; i < 3; i++)
      expect((await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greet', 'x')).status).toBe(
        200,
      );
    const traced = await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greet', 'x', {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    expect(traced.status).toBe(200);
    const bad = await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greet', 'x', {
      traceparent: 'not-a-traceparent',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.code).toBe('trace_context_invalid');
    expect((await api(server.socket, 'POST', '/v1/plugins/example.hello/call/nothing', 'x')).status).toBe(
      404,
    );

    const onSocket = await get({ socketPath: server.socket }, '/metrics');
    const onTcp = await get({ port }, '/metrics');
    expect(onSocket.status).toBe(200);
    expect(onTcp.status).toBe(200);
    expect(onTcp.type).toContain('text/plain');
    for (const { text } of [onSocket, onTcp]) {
      const s = sampleMap(text);
      const l = 'tenant="default",plugin="example.hello",mode="none"';
      expect(s.get(`reed_calls_total{${l},code="ok"}`)).toBe(4);
      expect(s.get(`reed_calls_total{${l},code="function_not_found"}`)).toBe(1);
      expect(s.get(`reed_sandbox_starts_total{${l},runtime="wasm",reason="first_load"}`)).toBe(1);
      expect(s.get(`reed_plugin_state{${l},state="ready"}`)).toBe(1);
    }
    // Only /metrics on the TCP port.
    expect((await get({ port }, '/v1/plugins')).status).toBe(404);
  });

  it('every metric the Grafana dashboard queries exists in the output', async () => {
    const { text } = await get({ socketPath: server.socket }, '/metrics');
    const types = new Map(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1] as string, m[2] as string]),
    );
    const sampled = new Set(parseSamples(text).map((s) => s.name));
    const wanted = dashboardMetrics();
    expect(wanted.length).toBeGreaterThan(15);
    const missing = wanted.filter((name) => {
      const base = name.replace(/_(bucket|sum|count)$/, '');
      if (base !== name) return types.get(base) !== 'histogram';
      return !types.has(name);
    });
    expect(missing).toEqual([]);
    // The call metrics have samples already (calls were made above).
    for (const name of ['reed_calls_total', 'reed_call_duration_seconds_bucket', 'reed_fuel_consumed_total'])
      expect(sampled.has(name)).toBe(true);
  });
});
