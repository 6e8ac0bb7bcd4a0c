// A mode-none call given to the metrics registry's series without its event when the registry is the only
// subscriber (Generation.call, events.ts's soleCallRecorder): every other subscriber, whenever it comes, still sees
// every call, the registry counts every call whichever way it came, and a generation's series goes with it.
import diagnosticsChannel from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleMap as samples } from '../../src/cli/prom-text.js';
import {
  type CallFinishedEvent,
  soleCallRecorder,
  subscribeCallRecorder,
  subscribeEvent,
} from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { ReedMetrics } from '../../src/server/metrics.js';
import { startHost, text } from '../helpers/host.js';
import { candidateIn, helloVersion } from '../helpers/lifecycle.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const L = 'tenant="default",plugin="example.hello",mode="none"';

async function withMetrics() {
  let host: PluginHost | undefined;
  const metrics = new ReedMetrics({
    targets: () => (host === undefined ? [] : [{ tenant: 'default', host }]),
  });
  cleanups.push(() => metrics.close());
  const started = await startHost([helloVersion('1.0.0', 'Hello')], {
    mode: 'none',
    reedToml: '[lifecycle]\nprobation_ms = 0\n',
  });
  host = started.host;
  cleanups.push(() => started.host.close());
  const counts = async () => {
    const s = samples(await metrics.text());
    return {
      ok: s.get(`reed_calls_total{${L},code="ok"}`),
      count: s.get(`reed_call_duration_seconds_count{${L}}`),
    };
  };
  return { host, metrics, counts };
}

describe('calls given to the registry without their event', () => {
  it('the registry is the sole recorder only while nobody else listens', () => {
    const recorder = { onCall: () => {}, sinkOf: () => undefined };
    const unsubscribe = subscribeCallRecorder(recorder);
    expect(soleCallRecorder()).toBe(recorder);
    const other = subscribeEvent('reed:call:finished', () => {});
    expect(soleCallRecorder()).toBeUndefined();
    other();
    expect(soleCallRecorder()).toBe(recorder);
    const onMessage = () => {};
    diagnosticsChannel.subscribe('reed:call:finished', onMessage);
    expect(soleCallRecorder()).toBeUndefined();
    diagnosticsChannel.unsubscribe('reed:call:finished', onMessage);
    expect(soleCallRecorder()).toBe(recorder);
    unsubscribe();
    expect(soleCallRecorder()).toBeUndefined();
  });

  it("a call settled at once goes to the sole recorder's sink, without an event; others get events again", async () => {
    const started = await startHost([helloVersion('1.0.0', 'Hello')], { mode: 'none' });
    const host = started.host;
    cleanups.push(() => host.close());
    const direct: [string, number, number][] = [];
    const events: CallFinishedEvent[] = [];
    const recorder = {
      onCall: (e: CallFinishedEvent) => {
        if (e.session === host.session.id) events.push(e);
      },
      sinkOf: (session: string, _tenant: string | undefined, pluginId: string, mode: string) =>
        session === host.session.id && pluginId === 'example.hello' && mode === 'none'
          ? { add: (code: string, ms: number, fuel: number) => direct.push([code, ms, fuel]) }
          : undefined,
    };
    cleanups.push(subscribeCallRecorder(recorder));
    for (let i = 0; i < 3; i++) await host.call('example.hello', 'greeting');
    expect(direct.map(([code]) => code)).toEqual(['ok', 'ok', 'ok']);
    expect(direct.every(([, ms, fuel]) => ms >= 0 && fuel > 0)).toBe(true);
    expect(events).toEqual([]);
    // A failed call and a call to nothing loaded: events, as before.
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    await expect(host.call('no.such', 'greet')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
    expect(events.map((e) => e.code)).toEqual(['function_not_found', 'plugin_not_loaded']);
    // Another subscriber: every call is an event, to both.
    const seen: CallFinishedEvent[] = [];
    const unsubscribe = subscribeEvent('reed:call:finished', (e) => {
      if (e.session === host.session.id) seen.push(e);
    });
    await host.call('example.hello', 'greeting');
    unsubscribe();
    expect(seen).toHaveLength(1);
    expect(events).toHaveLength(3);
    expect(direct).toHaveLength(3);
    await host.call('example.hello', 'greeting');
    expect(direct).toHaveLength(4);
  });

  it('a subscriber added after calls were made sees every later call; the registry counts them all', async () => {
    const { host, counts } = await withMetrics();
    for (let i = 0; i < 3; i++) await host.call('example.hello', 'greeting');
    expect(await counts()).toEqual({ ok: 3, count: 3 });

    const seen: CallFinishedEvent[] = [];
    const unsubscribe = subscribeEvent('reed:call:finished', (e) => {
      if (e.session === host.session.id) seen.push(e);
    });
    for (let i = 0; i < 4; i++) await host.call('example.hello', 'greeting');
    expect(seen).toHaveLength(4);
    expect(seen[0]).toMatchObject({ pluginId: 'example.hello', mode: 'none', fn: 'greeting', code: 'ok' });
    expect(seen[0]?.durationMs).toBeGreaterThanOrEqual(0);
    expect(seen[0]?.durationMs).toBeLessThan(60_000);

    // A subscriber of the channel itself (not through subscribeEvent) as well.
    const onChannel: unknown[] = [];
    const onMessage = (message: unknown) => {
      if ((message as CallFinishedEvent).session === host.session.id) onChannel.push(message);
    };
    unsubscribe();
    diagnosticsChannel.subscribe('reed:call:finished', onMessage);
    for (let i = 0; i < 2; i++) await host.call('example.hello', 'greeting');
    diagnosticsChannel.unsubscribe('reed:call:finished', onMessage);
    expect(onChannel).toHaveLength(2);
    expect(seen).toHaveLength(4);

    // Alone again: the direct way, still every call counted.
    for (let i = 0; i < 3; i++) await host.call('example.hello', 'greeting');
    expect(await counts()).toEqual({ ok: 12, count: 12 });
  });

  it('an upgrade counts the new generation into the same series; a removed plugin no longer adds to it', async () => {
    const { host, metrics, counts } = await withMetrics();
    for (let i = 0; i < 2; i++) await host.call('example.hello', 'greeting');
    await host.replace('example.hello', candidateIn(helloVersion('2.0.0', 'Howdy'), 'example.hello'));
    for (let i = 0; i < 3; i++)
      expect(text((await host.call('example.hello', 'greeting')).output)).toBe('"Howdy"');
    expect(await counts()).toEqual({ ok: 5, count: 5 });

    // A subscriber that comes after the upgrade sees the new generation's calls (its kept series is set aside).
    const seen: CallFinishedEvent[] = [];
    const unsubscribe = subscribeEvent('reed:call:finished', (e) => {
      if (e.session === host.session.id) seen.push(e);
    });
    await host.call('example.hello', 'greeting');
    unsubscribe();
    expect(seen).toEqual([expect.objectContaining({ pluginId: 'example.hello', code: 'ok' })]);

    await host.remove('example.hello');
    await expect(host.call('example.hello', 'greeting')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
    expect(await counts()).toEqual({ ok: 6, count: 6 });
    expect(
      samples(await metrics.text()).get(
        'reed_calls_total{tenant="default",plugin="_none",mode="none",code="plugin_not_loaded"}',
      ),
    ).toBe(1);
  });
});
