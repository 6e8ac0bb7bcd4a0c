// The Prometheus metrics (src/server/metrics.ts) from a real host's events in mode none, and their label bounds.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleMap as samples } from '../../src/cli/prom-text.js';
import { ReedError } from '../../src/errors.js';
import { publish } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { ReedMetrics } from '../../src/server/metrics.js';
import { LOADER_VERSION } from '../../src/version.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';

const EXAMPLES = join(REPO, 'examples/plugins');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('metrics from a host in mode none', () => {
  it('counts calls by outcome, their durations and fuel, the load and its cold start; reads state and WASM memory', async () => {
    let host: PluginHost | undefined;
    const metrics = new ReedMetrics({
      targets: () => (host === undefined ? [] : [{ tenant: 'default', host }]),
    });
    cleanups.push(() => metrics.close());
    const started = await startHost([EXAMPLES], { mode: 'none', plugins: ['example.hello'] });
    host = started.host;
    cleanups.push(() => started.host.close());
    const session = host.session.id;
    for (let i = 0; i < 3; i++) await host.call('example.hello', 'greet', 'you');
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    // An id nobody loaded: the caller's text is never a label.
    await expect(host.call('no.such-plugin', 'greet')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
    await expect(host.call('other.missing', 'greet')).rejects.toMatchObject({ code: 'plugin_not_loaded' });

    const text = await metrics.text();
    const s = samples(text);
    const l = 'tenant="default",plugin="example.hello",mode="none"';
    expect(s.get(`reed_calls_total{${l},code="ok"}`)).toBe(3);
    expect(s.get(`reed_calls_total{${l},code="function_not_found"}`)).toBe(1);
    expect(
      s.get('reed_calls_total{tenant="default",plugin="_none",mode="none",code="plugin_not_loaded"}'),
    ).toBe(2);
    expect(text).not.toContain('no.such-plugin');
    expect(s.get(`reed_call_duration_seconds_count{${l}}`)).toBe(4);
    expect(s.get(`reed_call_duration_seconds_bucket{${l},le="+Inf"}`)).toBe(4);
    expect(s.get(`reed_fuel_consumed_total{${l}}`)).toBeGreaterThan(0);
    expect(s.get(`reed_sandbox_starts_total{${l},runtime="wasm",reason="first_load"}`)).toBe(1);
    expect(s.get(`reed_cold_start_seconds_count{${l},reason="first_load"}`)).toBe(1);
    expect(s.get(`reed_plugin_state{${l},state="ready"}`)).toBe(1);
    expect(s.get(`reed_plugin_state{${l},state="failed"}`)).toBe(0);
    // One WASM page at least: the guest's linear memory.
    expect(s.get(`reed_sandbox_memory_bytes{${l}}`)).toBeGreaterThanOrEqual(65536);
    expect(s.get(`reed_storage_bytes{tenant="default",plugin="example.hello"}`)).toBe(0);
    expect(
      s.get(`reed_build_info{version="${LOADER_VERSION}",node_version="${process.versions.node}"}`),
    ).toBe(1);
    expect(metrics.contentType).toContain('text/plain');

    // The breaker's gauge follows its events; a crash counts by code.
    const at = { session, pluginId: 'example.hello', mode: 'none' as const };
    const crash = new ReedError('sandbox_crashed', 'stopped');
    publish('reed:sandbox:crashed', { ...at, error: crash, crashes: 1 });
    publish('reed:breaker:opened', {
      ...at,
      error: new ReedError('plugin_failed', 'failed', { cause: crash }),
      crashes: 3,
      windowMs: 1,
      cooldownMs: 1,
      retryAt: new Date().toISOString(),
    });
    let after = samples(await metrics.text());
    expect(after.get(`reed_sandbox_crashes_total{${l},code="sandbox_crashed"}`)).toBe(1);
    expect(after.get(`reed_breaker_state{${l}}`)).toBe(2);
    publish('reed:breaker:half-open', at);
    expect(samples(await metrics.text()).get(`reed_breaker_state{${l}}`)).toBe(1);
    publish('reed:breaker:closed', { ...at, pid: 1 });
    after = samples(await metrics.text());
    expect(after.get(`reed_breaker_state{${l}}`)).toBe(0);
  });
});

describe('label bounds', () => {
  it('past maxPlugins, plugins share the label _other; the tenant comes from the event, default without one', async () => {
    const metrics = new ReedMetrics({ targets: () => [], maxPlugins: 2, sessions: (s) => s === 'mine' });
    cleanups.push(() => metrics.close());
    const call = (pluginId: string, extra: object = {}, session = 'mine') =>
      publish('reed:call:finished', {
        session,
        pluginId,
        mode: 'process',
        fn: 'f',
        code: 'ok',
        durationMs: 2,
        fuelConsumed: 5,
        ...extra,
      });
    for (let i = 0; i < 50; i++) call(`p${i}`);
    call('p0', { tenant: 'acme' });
    call('p0', {}, 'another-host');
    const s = samples(await metrics.text());
    const calls = [...s].filter(([k]) => k.startsWith('reed_calls_total'));
    expect(calls).toEqual([
      ['reed_calls_total{tenant="default",plugin="p0",mode="process",code="ok"}', 1],
      ['reed_calls_total{tenant="default",plugin="p1",mode="process",code="ok"}', 1],
      ['reed_calls_total{tenant="default",plugin="_other",mode="process",code="ok"}', 48],
      ['reed_calls_total{tenant="acme",plugin="_other",mode="process",code="ok"}', 1],
    ]);
    expect(s.get('reed_fuel_consumed_total{tenant="default",plugin="_other",mode="process"}')).toBe(240);
    expect(
      s.get('reed_call_duration_seconds_bucket{tenant="default",plugin="_other",mode="process",le="0.0025"}'),
    ).toBe(48);
    expect(
      s.get('reed_call_duration_seconds_bucket{tenant="default",plugin="_other",mode="process",le="0.001"}'),
    ).toBe(0);
  });

  it('a series counts every outcome once: ok calls, failed ones by code, the histogram over all of them', async () => {
    const metrics = new ReedMetrics({ targets: () => [], sessions: (s) => s === 'counted' });
    cleanups.push(() => metrics.close());
    const call = (pluginId: string, code: 'ok' | 'call_timeout' | 'wasm_trap', durationMs: number) =>
      publish('reed:call:finished', {
        session: 'counted',
        pluginId,
        mode: 'none',
        fn: 'f',
        code,
        durationMs,
        fuelConsumed: 1,
      });
    for (const ms of [0.001, 0.02, 3, 40_000]) call('mixed', 'ok', ms);
    call('mixed', 'call_timeout', 5000);
    call('mixed', 'wasm_trap', 0.2);
    call('mixed', 'wasm_trap', 0.2);
    call('failing', 'wasm_trap', 1);
    const s = samples(await metrics.text());
    const calls = [...s].filter(([k]) => k.startsWith('reed_calls_total'));
    expect(calls).toEqual([
      ['reed_calls_total{tenant="default",plugin="mixed",mode="none",code="ok"}', 4],
      ['reed_calls_total{tenant="default",plugin="mixed",mode="none",code="call_timeout"}', 1],
      ['reed_calls_total{tenant="default",plugin="mixed",mode="none",code="wasm_trap"}', 2],
      // Only failures: no ok sample at all (not an ok of 0).
      ['reed_calls_total{tenant="default",plugin="failing",mode="none",code="wasm_trap"}', 1],
    ]);
    const l = 'tenant="default",plugin="mixed",mode="none"';
    expect(s.get(`reed_call_duration_seconds_count{${l}}`)).toBe(7);
    expect(s.get(`reed_call_duration_seconds_bucket{${l},le="+Inf"}`)).toBe(7);
    // 40 s is past the last bound (30): in +Inf only.
    expect(s.get(`reed_call_duration_seconds_bucket{${l},le="30"}`)).toBe(6);
    expect(s.get(`reed_call_duration_seconds_bucket{${l},le="0.00001"}`)).toBe(1);
    expect(s.get(`reed_call_duration_seconds_bucket{${l},le="0.00025"}`)).toBe(4);
    expect(s.get(`reed_call_duration_seconds_sum{${l}}`)).toBeCloseTo(45_003.421 / 1000, 9);
    expect(s.get('reed_call_duration_seconds_count{tenant="default",plugin="failing",mode="none"}')).toBe(1);
  });

  it('after close, events no longer count', async () => {
    const metrics = new ReedMetrics({ targets: () => [] });
    metrics.close();
    publish('reed:call:finished', {
      session: 's',
      pluginId: 'p',
      mode: 'none',
      fn: 'f',
      code: 'ok',
      durationMs: 1,
      fuelConsumed: 0,
    });
    expect(await metrics.text()).not.toContain('reed_calls_total{');
  });
});
