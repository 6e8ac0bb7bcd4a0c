// Upgrades while serving (issue 13): 64 concurrent callers on a plugin in each mode, upgraded v1 -> v2 through
// PluginHost.replace: every call is answered, all succeed, each caller's outputs switch from v1 to v2 once, and the
// old sandbox is gone afterwards (its runner process, its container). Process and container modes run from dist/.
import type Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { Sandbox } from '../../src/backends/sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { type ReedEvents, subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { startHost, text } from '../helpers/host.js';
import { candidateIn, helloVersion, load, switchedOnce } from '../helpers/lifecycle.js';
import { alive } from '../helpers/processes.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const V1 = '"Hello"';
const V2 = '"Howdy"';
const runnerOf = (sandbox: Sandbox) => ((sandbox as LazySandbox).inner as SupervisedSandbox).runner;

/** What proves a sandbox gone in its mode: its runner's process, its container, or its calls refused. */
async function expectGone(
  mode: SandboxMode,
  sandbox: Sandbox,
  pid: number | undefined,
  container?: Docker.Container,
) {
  await expect(sandbox.call('greet', new Uint8Array())).rejects.toMatchObject({ code: 'plugin_not_loaded' });
  if (mode === 'process') expect(alive(pid as number)).toBe(false);
  if (mode === 'container') await expect(container?.inspect()).rejects.toMatchObject({ statusCode: 404 });
}

describe.each<SandboxMode>(['none', 'process', 'container'])('upgrade under load (mode %s)', (mode) => {
  it('64 concurrent callers lose no call from v1 to v2; the old sandbox is gone', async () => {
    const { host } = await startHost([helloVersion('1.0.0', 'Hello')], {
      mode,
      reedToml: '[lifecycle]\nprobation_ms = 0\n',
    });
    cleanups.push(() => host.close());
    const stopped: ReedEvents['reed:plugin:stopped'][] = [];
    cleanups.push(
      subscribeEvent('reed:plugin:stopped', (e) => {
        if (e.session === (host as PluginHost).session.id) stopped.push(e);
      }),
    );
    const old = host.sandbox('example.hello');
    const oldPid = mode === 'process' ? runnerOf(old)?.pid : undefined;
    const oldContainer =
      mode === 'container' ? ((runnerOf(old) as ContainerRunner).container as Docker.Container) : undefined;
    // `greeting` answers the configuration's greeting: v1 and v2 differ there (helloVersion).
    const callers = load(64, async () => text((await host.call('example.hello', 'greeting')).output));
    try {
      await callers.until((a) => a === V1);
      const status = await host.replace(
        'example.hello',
        candidateIn(helloVersion('2.0.0', 'Howdy'), 'example.hello'),
      );
      expect(status).toMatchObject({ id: 'example.hello', version: '2.0.0', state: 'ready', mode });
      await callers.until((a) => a === V2);
    } finally {
      await callers.stop();
    }
    for (const answers of callers.answers) {
      expect(answers.filter((a) => a.startsWith('!'))).toEqual([]);
      expect(switchedOnce(answers, V1, V2)).toBe(true);
    }
    await expectGone(mode, old, oldPid, oldContainer);
    expect(host.sandbox('example.hello')).not.toBe(old);
    // The old version drained in time (no call cut off) and stopped; nothing is left draining.
    expect(stopped).toEqual([expect.objectContaining({ version: '1.0.0' })]);
    expect(stopped[0]).not.toHaveProperty('drainTimedOut');
    const after = host.pluginStatus('example.hello');
    expect(after).not.toHaveProperty('draining');
    expect(after.history).toEqual([
      expect.objectContaining({ action: 'upgraded', version: '2.0.0', fromVersion: '1.0.0' }),
    ]);
  });
});
