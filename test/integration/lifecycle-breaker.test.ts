// Breaker recovery in process mode (issue 13, point 4): an open breaker half-opens after its cool-down, one trial
// start closes it or opens it again with a doubled cool-down, and the status says so at every step. Runners are
// killed from outside (SIGKILL to the sandbox's bwrap) or refused by test/fixtures/runners/gate.mjs. Runs from
// dist/ (npm run build).
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { type EventName, type ReedEvents, subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const EXAMPLES = join(REPO, 'examples/plugins');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** This host's breaker events, in order. */
function breakerEvents(host: () => PluginHost | undefined) {
  const seen: { name: EventName; event: ReedEvents[EventName] }[] = [];
  for (const name of ['reed:breaker:opened', 'reed:breaker:half-open', 'reed:breaker:closed'] as const)
    cleanups.push(
      subscribeEvent(name, (event) => {
        if (event.session === host()?.session.id) seen.push({ name, event });
      }),
    );
  return seen;
}

async function gatedHost(gate: string) {
  const { host } = await startHost([EXAMPLES], {
    mode: 'process',
    plugins: ['example.hello'],
    supervision: {
      startTimeoutMs: 5_000,
      graceMs: 500,
      restartBaseMs: 20,
      restartMaxMs: 100,
      maxCrashes: 3,
      crashWindowMs: 60_000,
      breakerCooldownMs: 300,
      breakerCooldownMaxMs: 10_000,
      healthIntervalMs: 0,
    },
    runnerCommand: [process.execPath, join(REPO, 'test/fixtures/runners/gate.mjs'), gate],
  });
  cleanups.push(() => host.close());
  return host;
}

const runnerPid = (host: PluginHost) =>
  ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox).runner?.pid;

const until = async (done: () => boolean, what: string) => {
  for (let i = 0; i < 400 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!done()) throw new Error(`timed out waiting for ${what}`);
};

const statusOf = (host: PluginHost) => host.status().find((s) => s.id === 'example.hello');

describe('the breaker recovers (process mode)', () => {
  it('a plugin killed repeatedly from outside opens its breaker, then recovers by itself once the kills stop', async () => {
    let current: PluginHost | undefined;
    const events = breakerEvents(() => current);
    const host = await gatedHost(tempDir('reed-gate-'));
    current = host;
    for (let kill = 1; kill <= 3; kill++) {
      const pid = runnerPid(host) as number;
      process.kill(pid, 'SIGKILL');
      if (kill < 3)
        await until(
          () => statusOf(host)?.state === 'ready' && runnerPid(host) !== pid,
          `the restart after kill ${kill}`,
        );
    }
    await until(() => events.some((e) => e.name === 'reed:breaker:opened'), 'the breaker to open');
    // The truth while it is open: failed, three crashes, the last one's code, when it half-opens.
    const open = statusOf(host);
    expect(open).toMatchObject({
      state: 'failed',
      crashes: 3,
      error: { code: 'plugin_failed' },
      lastError: { code: 'sandbox_crashed' },
      retryAt: expect.any(String),
    });
    expect(Date.parse(open?.retryAt as string)).toBeGreaterThan(0);
    const refused = await host.call('example.hello', 'greet', 'you').catch((e) => e);
    expect(refused).toMatchObject({
      code: 'plugin_failed',
      details: { causeCode: 'sandbox_crashed', crashes: 3, retryAt: open?.retryAt },
    });
    await until(() => events.some((e) => e.name === 'reed:breaker:closed'), 'the breaker to close');
    expect(events.map((e) => e.name)).toEqual([
      'reed:breaker:opened',
      'reed:breaker:half-open',
      'reed:breaker:closed',
    ]);
    expect(events[0]?.event).toMatchObject({ cooldownMs: 300, retryAt: open?.retryAt, crashes: 3 });
    expect(text((await host.call('example.hello', 'greet', 'again')).output)).toBe('Hello, again!');
    expect(statusOf(host)).toMatchObject({ state: 'ready', crashes: 0 });
    expect(statusOf(host)).not.toHaveProperty('retryAt');
    expect(statusOf(host)).not.toHaveProperty('error');
  });

  it('a failed trial start opens it again with a doubled cool-down; the next trial that starts closes it', async () => {
    let current: PluginHost | undefined;
    const events = breakerEvents(() => current);
    const gate = tempDir('reed-gate-');
    const host = await gatedHost(gate);
    current = host;
    // From now on every start fails: one kill, then two failed restarts, and the breaker opens.
    writeFileSync(join(gate, 'fail'), '');
    process.kill(runnerPid(host) as number, 'SIGKILL');
    await until(() => events.filter((e) => e.name === 'reed:breaker:opened').length === 2, 'a reopening');
    expect(statusOf(host)).toMatchObject({ state: 'failed', retryAt: expect.any(String) });
    rmSync(join(gate, 'fail'));
    await until(() => events.some((e) => e.name === 'reed:breaker:closed'), 'the breaker to close');
    expect(events.map((e) => e.name)).toEqual([
      'reed:breaker:opened',
      'reed:breaker:half-open',
      'reed:breaker:opened',
      'reed:breaker:half-open',
      'reed:breaker:closed',
    ]);
    expect(events.filter((e) => e.name === 'reed:breaker:opened').map((e) => e.event)).toEqual([
      expect.objectContaining({ cooldownMs: 300, crashes: 3 }),
      expect.objectContaining({
        cooldownMs: 600,
        error: expect.objectContaining({ message: expect.stringContaining('trial start') }),
      }),
    ]);
    expect(text((await host.call('example.hello', 'greet', 'back')).output)).toBe('Hello, back!');
    expect(statusOf(host)).toMatchObject({ state: 'ready', crashes: 0 });
  });
});
