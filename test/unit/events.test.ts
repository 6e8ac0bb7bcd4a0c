import diagnosticsChannel from 'node:diagnostics_channel';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import {
  EVENT_NAMES,
  type EventName,
  hasSubscribers,
  publish,
  type ReedEvents,
  subscribeEvent,
} from '../../src/events/events.js';
import { logEvents } from '../../src/events/log-subscriber.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost } from '../helpers/host.js';

const EXAMPLES = join(REPO, 'examples/plugins');

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Every event published from now on, in order, with its channel's name. */
function record(): { name: EventName; event: ReedEvents[EventName] }[] {
  const seen: { name: EventName; event: ReedEvents[EventName] }[] = [];
  for (const name of EVENT_NAMES) cleanups.push(subscribeEvent(name, (event) => seen.push({ name, event })));
  return seen;
}

function capture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => lines.push(JSON.parse(l) as LogLine) });
  return { logger, lines };
}

describe('events on node:diagnostics_channel', () => {
  it('publishes to subscribers of that channel only, with the payload as given', () => {
    const loaded: ReedEvents['reed:plugin:loaded'][] = [];
    const failed: unknown[] = [];
    cleanups.push(subscribeEvent('reed:plugin:loaded', (e) => loaded.push(e)));
    cleanups.push(subscribeEvent('reed:plugin:failed', (e) => failed.push(e)));
    const event = { session: 's', pluginId: 'p', mode: 'none' as const, version: '1.0.0' };
    publish('reed:plugin:loaded', event);
    expect(loaded).toEqual([event]);
    expect(failed).toEqual([]);
  });

  it('says whether a channel has subscribers, and forgets one that unsubscribed', () => {
    expect(hasSubscribers('reed:call:finished')).toBe(false);
    const unsubscribe = subscribeEvent('reed:call:finished', () => {});
    expect(hasSubscribers('reed:call:finished')).toBe(true);
    unsubscribe();
    expect(hasSubscribers('reed:call:finished')).toBe(false);
  });

  it('reed:call:finished reaches the listeners of subscribeEvent and those of its channel, each until unsubscribed', async () => {
    const { host } = await startHost([EXAMPLES], { mode: 'none', plugins: ['example.hello'] });
    cleanups.push(() => host.close());
    const listed: string[] = [];
    const outside: string[] = [];
    const onChannel = (message: unknown) => outside.push((message as ReedEvents['reed:call:finished']).fn);
    // Subscribed on the channel itself, as a program that never imports this package's events would.
    diagnosticsChannel.subscribe('reed:call:finished', onChannel);
    cleanups.push(() => diagnosticsChannel.unsubscribe('reed:call:finished', onChannel));
    expect(hasSubscribers('reed:call:finished')).toBe(true);
    await host.call('example.hello', 'echo', 'a');
    const unsubscribe = subscribeEvent('reed:call:finished', (e) => listed.push(e.fn));
    await host.call('example.hello', 'greet', 'b');
    // Published once to each, the same event.
    expect(listed).toEqual(['greet']);
    expect(outside).toEqual(['echo', 'greet']);
    diagnosticsChannel.unsubscribe('reed:call:finished', onChannel);
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    expect(listed).toEqual(['greet', 'nothing']);
    expect(outside).toEqual(['echo', 'greet']);
    const later: string[] = [];
    const unsubscribeLater = subscribeEvent('reed:call:finished', (e) => later.push(e.fn));
    unsubscribe();
    unsubscribe(); // twice: the one listener removed, never another
    expect(hasSubscribers('reed:call:finished')).toBe(true);
    await host.call('example.hello', 'echo', 'c');
    expect(listed).toEqual(['greet', 'nothing']);
    expect(later).toEqual(['echo']);
    unsubscribeLater();
    expect(hasSubscribers('reed:call:finished')).toBe(false);
  });

  it('the log subscriber writes one host\u2019s events as the lines the host wrote before, and no other host\u2019s', () => {
    const { logger, lines } = capture();
    cleanups.push(logEvents(logger, 'mine'));
    const at = { session: 'mine', pluginId: 'p', mode: 'process' as const };
    const crash = new ReedError('sandbox_crashed', 'the runner of plugin "p" stopped (exit code 1)');
    publish('reed:plugin:loaded', { ...at, session: 'other', version: '1' });
    publish('reed:plugin:loaded', { ...at, version: '1' });
    publish('reed:sandbox:crashed', { ...at, error: crash, crashes: 1, restartInMs: 20 });
    publish('reed:sandbox:crashed', { ...at, error: crash, crashes: 3 });
    publish('reed:breaker:opened', {
      ...at,
      error: new ReedError('plugin_failed', 'plugin "p" is marked failed', { cause: crash }),
      crashes: 3,
      windowMs: 60_000,
      cooldownMs: 5_000,
      retryAt: '2026-12-01T00:00:05.000Z',
    });
    publish('reed:breaker:half-open', at);
    publish('reed:breaker:closed', { ...at, pid: 7 });
    publish('reed:plugin:stopped', { ...at, error: { code: 'wasm_trap', message: 'x'.repeat(5000) } });
    publish('reed:plugin:stopped', at);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [30, 'plugin ready'],
      [40, 'the runner of plugin "p" stopped (exit code 1); restarting'],
      [50, 'plugin "p" is marked failed'],
      [30, 'breaker half-open: one trial start'],
      [30, 'breaker closed: the plugin serves again'],
      [40, 'deactivate failed'],
    ]);
    expect(lines[0]).toMatchObject({ pluginId: 'p', sandbox: 'process', version: '1' });
    expect(lines[1]).toMatchObject({ code: 'sandbox_crashed', restartInMs: 20 });
    expect(lines[2]).toMatchObject({ code: 'sandbox_crashed', retryAt: '2026-12-01T00:00:05.000Z' });
    expect(lines[4]).toMatchObject({ pluginId: 'p', pid: 7 });
    expect(lines[5]).toMatchObject({ pluginId: 'p', code: 'wasm_trap' });
    expect(String(lines[5]?.why).length).toBe(2048);
  });

  it('a logger that throws loses its line, never the publisher\u2019s work', () => {
    const logger = pino(
      { level: 'info' },
      {
        write: () => {
          throw new Error('disk full');
        },
      },
    );
    cleanups.push(logEvents(logger, 's'));
    expect(() =>
      publish('reed:plugin:loaded', { session: 's', pluginId: 'p', mode: 'none', version: '1' }),
    ).not.toThrow();
  });
});

describe('a host\u2019s events in mode none', () => {
  it('plugin loaded and failed at start, call finished with its outcome and fuel, plugin stopped at close', async () => {
    const seen = record();
    const { host, logs } = await startHost([EXAMPLES], {
      mode: 'none',
      plugins: ['example.hello', 'example.native-c'],
    });
    let closed = false;
    cleanups.push(() => (closed ? undefined : host.close()));
    const session = (host as PluginHost).session.id;
    const lifecycle = seen.filter((s) => s.event.session === session);
    expect(lifecycle.map((s) => [s.name, s.event.pluginId])).toEqual(
      expect.arrayContaining([
        ['reed:plugin:loaded', 'example.hello'],
        ['reed:plugin:failed', 'example.native-c'],
      ]),
    );
    expect(lifecycle.find((s) => s.name === 'reed:plugin:loaded')?.event).toMatchObject({
      mode: 'none',
      version: '0.1.0',
    });
    expect(lifecycle.find((s) => s.name === 'reed:plugin:failed')?.event).toMatchObject({
      error: { code: 'native_in_process_denied' },
    });
    // The same log lines as before events existed.
    expect(logs.some((l) => l.msg === 'plugin ready' && l.pluginId === 'example.hello')).toBe(true);
    expect(logs.some((l) => l.code === 'native_in_process_denied' && l.level === 50)).toBe(true);

    await host.call('example.hello', 'greet', 'you');
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    await expect(host.call('no.such', 'greet')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
    const calls = seen.filter((s) => s.name === 'reed:call:finished').map((s) => s.event);
    expect(calls).toEqual([
      expect.objectContaining({ pluginId: 'example.hello', mode: 'none', fn: 'greet', code: 'ok' }),
      expect.objectContaining({ fn: 'nothing', code: 'function_not_found', fuelConsumed: 0 }),
      expect.objectContaining({ pluginId: 'no.such', mode: undefined, code: 'plugin_not_loaded' }),
    ]);
    const ok = calls[0] as ReedEvents['reed:call:finished'];
    expect(ok.fuelConsumed).toBeGreaterThan(0);
    expect(ok.durationMs).toBeGreaterThanOrEqual(0);

    await host.close();
    closed = true;
    expect(seen.filter((s) => s.name === 'reed:plugin:stopped').map((s) => s.event)).toEqual([
      { session, pluginId: 'example.hello', mode: 'none', version: '0.1.0' },
    ]);
  });
});
