// Rollback (issue 13, point 2): a v2 that fails init leaves v1 serving, and a v2 that crashes in a loop after it
// started trips its breaker on probation and v1 is restored, both under 64 concurrent callers, with the failure in
// the plugin's status and in the events. Process mode runs from dist/ (npm run build).
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { type EventName, type ReedEvents, subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { candidateIn, helloToml, helloVersion, load, pluginDir } from '../helpers/lifecycle.js';
import { tempDir } from '../helpers/plugin-tree.js';

const V1 = '"Hello"';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** This host's lifecycle events of these names, in order. */
function events(host: PluginHost, names: EventName[]) {
  const seen: { name: EventName; event: ReedEvents[EventName] }[] = [];
  for (const name of names)
    cleanups.push(
      subscribeEvent(name, (event) => {
        if (event.session === host.session.id) seen.push({ name, event });
      }),
    );
  return seen;
}

/** example.hello 2.0.0 whose code is another fixture's (a module whose init fails, a library that segfaults). */
function brokenV2(from: string): string {
  const root = tempDir('reed-broken-');
  pluginDir(root, 'hello', helloToml('2.0.0', 'Broken'), from);
  return root;
}

const PROCESS = {
  startTimeoutMs: 5_000,
  graceMs: 500,
  restartBaseMs: 20,
  restartMaxMs: 100,
  maxCrashes: 3,
  crashWindowMs: 60_000,
  // Far beyond the test: the breaker stays open, so only the rollback can bring v1 back.
  breakerCooldownMs: 600_000,
  healthIntervalMs: 0,
};

async function hostAtV1(mode: SandboxMode) {
  const { host } = await startHost([helloVersion('1.0.0', 'Hello')], {
    mode,
    reedToml: '[signatures]\nrequire = "none"\n',
    ...(mode === 'process' ? { supervision: PROCESS } : {}),
  });
  cleanups.push(() => host.close());
  return host;
}

describe.each<SandboxMode>(['none', 'process'])('a v2 that fails init (mode %s)', (mode) => {
  it('leaves v1 serving under load; the change answers init_failed, the status and the events say so', async () => {
    const host = await hostAtV1(mode);
    const seen = events(host, ['reed:plugin:upgrade-failed', 'reed:plugin:upgraded']);
    const callers = load(64, async () => text((await host.call('example.hello', 'greeting')).output));
    let refused: unknown;
    try {
      await callers.until((a) => a === V1);
      const v2 = brokenV2(join(REPO, 'test/fixtures/hostile/init-error'));
      refused = await host.replace('example.hello', candidateIn(v2, 'example.hello')).catch((e) => e);
      await callers.until((a) => a === V1, 5);
    } finally {
      await callers.stop();
    }
    expect(refused).toMatchObject({
      code: 'init_failed',
      pluginId: 'example.hello',
      details: { version: '2.0.0', servingVersion: '1.0.0' },
    });
    for (const answers of callers.answers) expect(answers.every((a) => a === V1)).toBe(true);
    expect(host.pluginStatus('example.hello')).toMatchObject({
      version: '1.0.0',
      state: 'ready',
      history: [
        {
          action: 'upgrade_failed',
          version: '2.0.0',
          fromVersion: '1.0.0',
          error: { code: 'init_failed' },
        },
      ],
    });
    expect(seen.map((s) => s.name)).toEqual(['reed:plugin:upgrade-failed']);
    expect(seen[0]?.event).toMatchObject({
      version: '2.0.0',
      fromVersion: '1.0.0',
      error: { code: 'init_failed' },
    });
  });
});

describe('a v2 that crashes in a loop after it started (mode process)', () => {
  it('trips its breaker on probation and v1 is restored under load; the sandbox of v2 is stopped', async () => {
    const host = await hostAtV1('process');
    const seen = events(host, ['reed:plugin:upgraded', 'reed:breaker:opened', 'reed:plugin:rolled-back']);
    const callers = load(64, async () => text((await host.call('example.hello', 'greeting')).output));
    let v2Pid: number | undefined;
    let v2Sandbox: ReturnType<PluginHost['sandbox']> | undefined;
    try {
      await callers.until((a) => a === V1);
      // Its library starts, then aborts on every call: each call to `greeting` kills its runner.
      const v2 = brokenV2(join(REPO, 'test/fixtures/native-process/crash-loop'));
      const upgraded = await host.replace('example.hello', candidateIn(v2, 'example.hello'));
      expect(upgraded).toMatchObject({ version: '2.0.0', probation: { previousVersion: '1.0.0' } });
      v2Sandbox = host.sandbox('example.hello');
      v2Pid = ((v2Sandbox as LazySandbox).inner as SupervisedSandbox).runner?.pid;
      for (let i = 0; i < 2000 && !seen.some((s) => s.name === 'reed:plugin:rolled-back'); i++)
        await new Promise((r) => setTimeout(r, 10));
      await callers.until((a) => a === V1, 5);
    } finally {
      await callers.stop();
    }
    expect(seen.map((s) => s.name)).toEqual([
      'reed:plugin:upgraded',
      'reed:breaker:opened',
      'reed:plugin:rolled-back',
    ]);
    expect(seen[2]?.event).toMatchObject({
      version: '1.0.0',
      fromVersion: '2.0.0',
      error: { code: 'plugin_failed', details: { causeCode: 'sandbox_crashed' } },
    });
    const status = host.pluginStatus('example.hello');
    expect(status).toMatchObject({ version: '1.0.0', state: 'ready', crashes: 0 });
    expect(status).not.toHaveProperty('probation');
    expect(status.history.map((h) => [h.action, h.version, h.fromVersion])).toEqual([
      ['upgraded', '2.0.0', '1.0.0'],
      ['rolled_back', '1.0.0', '2.0.0'],
    ]);
    expect(status.history[1]?.error).toMatchObject({ code: 'plugin_failed' });
    // Every caller ends on v1; what failed in between failed with the crash or the open breaker, never hung.
    for (const answers of callers.answers) {
      expect(answers.slice(-5)).toEqual(Array(5).fill(V1));
      for (const a of answers) expect([V1, '!sandbox_crashed', '!plugin_failed']).toContain(a);
    }
    // v2's sandbox was stopped (no runner left to restart), and its first runner is gone.
    expect(v2Sandbox?.status().state).toBe('stopped');
    expect(v2Pid).toBeDefined();
    expect(() => process.kill(v2Pid as number, 0)).toThrow();
  });
});

describe('probation (mode none)', () => {
  it('ends after probation_ms: the status says so and the previous version is no longer held', async () => {
    const { host } = await startHost([helloVersion('1.0.0', 'Hello')], {
      mode: 'none',
      reedToml: '[lifecycle]\nprobation_ms = 200\n',
    });
    cleanups.push(() => host.close());
    const during = await host.replace(
      'example.hello',
      candidateIn(helloVersion('2.0.0', 'Howdy'), 'example.hello'),
    );
    expect(during.probation).toMatchObject({ previousVersion: '1.0.0', until: expect.any(String) });
    for (let i = 0; i < 400 && host.pluginStatus('example.hello').probation !== undefined; i++)
      await new Promise((r) => setTimeout(r, 10));
    const after = host.pluginStatus('example.hello');
    expect(after).not.toHaveProperty('probation');
    expect(after.history.map((h) => h.action)).toEqual(['upgraded', 'probation_passed']);
    expect(text((await host.call('example.hello', 'greeting')).output)).toBe('"Howdy"');
  });
});
