// Lifecycle events in process mode: a runner that dies in the middle of a call (test/fixtures/runners/
// exit-mid-call.mjs) crashes, is restarted, and after three crashes trips the breaker. Runs from dist/ (npm run build).
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENT_NAMES, type EventName, type ReedEvents, subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';

const HELLO = [join(REPO, 'examples/plugins')];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Seen = { name: EventName; event: ReedEvents[EventName] };

/** This host's events, in order: channels are process-wide, the session tells hosts apart. */
function record(): { seen: Seen[]; of: (host: PluginHost) => Seen[] } {
  const seen: Seen[] = [];
  for (const name of EVENT_NAMES) cleanups.push(subscribeEvent(name, (event) => seen.push({ name, event })));
  return { seen, of: (host) => seen.filter((s) => s.event.session === host.session.id) };
}

async function processHost(runner?: string) {
  const started = await startHost(HELLO, {
    mode: 'process',
    plugins: ['example.hello'],
    reedToml: '[signatures]\nrequire = "none"\n',
    supervision: {
      startTimeoutMs: 5_000,
      graceMs: 500,
      restartBaseMs: 20,
      restartMaxMs: 100,
      maxCrashes: 3,
      crashWindowMs: 60_000,
      healthIntervalMs: 0,
    },
    ...(runner === undefined
      ? {}
      : { runnerCommand: [process.execPath, join(REPO, 'test/fixtures/runners', runner)] }),
  });
  cleanups.push(() => started.host.close());
  return started;
}

const until = async (done: () => boolean, what: string) => {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!done()) throw new Error(`timed out waiting for ${what}`);
};

describe('events in process mode', () => {
  it('the real runner: plugin loaded, sandbox started with what it enforces, call finished, plugin stopped', async () => {
    const { of } = record();
    const { host, logs } = await processHost();
    await host.call('example.hello', 'greet', 'you');
    await host.close();
    const events = of(host);
    expect(events.map((s) => s.name)).toEqual([
      'reed:sandbox:started',
      'reed:plugin:loaded',
      'reed:call:finished',
      'reed:plugin:stopped',
    ]);
    expect(events[0]?.event).toMatchObject({
      pluginId: 'example.hello',
      mode: 'process',
      restart: false,
      pid: expect.any(Number),
      enforced: expect.arrayContaining(['call deadline']),
    });
    expect(events[2]?.event).toMatchObject({ fn: 'greet', code: 'ok', mode: 'process' });
    const finished = events[2]?.event as ReedEvents['reed:call:finished'] | undefined;
    expect(finished?.fuelConsumed).toBeGreaterThan(0);
    // The log lines the supervisor and the host wrote before events existed.
    expect(logs.find((l) => l.msg === 'runner ready')).toMatchObject({
      pluginId: 'example.hello',
      sandbox: 'process',
      enforced: expect.any(Array),
    });
    expect(logs.some((l) => l.msg === 'plugin ready' && l.pluginId === 'example.hello')).toBe(true);
  });

  it('a runner that dies mid-call: crashed, restarted, and after three crashes the breaker opens', async () => {
    const { of } = record();
    const { host, logs } = await processHost('exit-mid-call.mjs');
    const names = () => of(host).map((s) => s.name);
    for (let crash = 1; crash <= 2; crash++) {
      await expect(host.call('example.hello', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
      await until(() => names().filter((n) => n === 'reed:sandbox:restarted').length === crash, 'a restart');
      expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
    }
    await expect(host.call('example.hello', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
    await until(() => names().includes('reed:breaker:opened'), 'the breaker');
    await expect(host.call('example.hello', 'ok')).rejects.toMatchObject({ code: 'plugin_failed' });

    const events = of(host);
    const crashes = events.filter((s) => s.name === 'reed:sandbox:crashed').map((s) => s.event);
    expect(crashes).toEqual([
      expect.objectContaining({
        crashes: 1,
        restartInMs: 20,
        error: expect.objectContaining({ code: 'sandbox_crashed' }),
      }),
      // A call that succeeded in between resets the backoff.
      expect.objectContaining({ crashes: 2, restartInMs: 20 }),
      expect.objectContaining({ crashes: 3 }),
    ]);
    expect(crashes[2]).not.toHaveProperty('restartInMs');
    const restarted = events.filter((s) => s.name === 'reed:sandbox:restarted').map((s) => s.event);
    expect(restarted).toEqual([
      expect.objectContaining({ pluginId: 'example.hello', mode: 'process', downtimeMs: expect.any(Number) }),
      expect.objectContaining({ downtimeMs: expect.any(Number) }),
    ]);
    const started = events.filter((s) => s.name === 'reed:sandbox:started').map((s) => s.event);
    expect(started.map((e) => (e as ReedEvents['reed:sandbox:started']).restart)).toEqual([
      false,
      true,
      true,
    ]);
    expect(events.find((s) => s.name === 'reed:breaker:opened')?.event).toMatchObject({
      crashes: 3,
      windowMs: 60_000,
      error: { code: 'plugin_failed', details: { causeCode: 'sandbox_crashed' } },
    });
    const calls = events.filter((s) => s.name === 'reed:call:finished').map((s) => s.event);
    expect(calls.map((e) => (e as ReedEvents['reed:call:finished']).code)).toEqual([
      'sandbox_crashed',
      'ok',
      'sandbox_crashed',
      'ok',
      'sandbox_crashed',
      'plugin_failed',
    ]);
    // The same log lines as before: two restarts, then the breaker's.
    expect(logs.filter((l) => l.level === 40 && String(l.msg).endsWith('; restarting'))).toHaveLength(2);
    expect(logs.find((l) => /marked failed after 3 crashes/.test(l.msg))).toMatchObject({
      level: 50,
      code: 'sandbox_crashed',
      sandbox: 'process',
    });
  });
});
