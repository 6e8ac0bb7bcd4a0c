// Scale to zero's suite, run in every mode by test/integration/idle-*.test.ts: test/fixtures/idle/counter (built by
// the set-up from plugin.c) counts its inits and deactivates in storage and its calls in its instance's memory, and
// idles after 200 ms (its manifest's [sandbox] idle_timeout). Each mode says how to tell that its sandbox's runner
// (process, container) is gone. States are polled, never timed.
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { Sandbox } from '../../src/backends/sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { ReedError } from '../../src/errors.js';
import { type EventName, type ReedEvents, subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { REPO } from './cli.js';
import { startHost, text } from './host.js';

export const IDLE_PLUGIN = 'fixture.idle';
const FIXTURES = join(REPO, 'test/fixtures/idle');

/** What a mode checks beyond the status: that nothing of the sandbox runs (its runner or container). */
export interface IdleModeChecks {
  /** Resolves when nothing of this host's sandboxes runs any more; throws after a bound if something still does. */
  nothingRuns(host: PluginHost, sandbox: Sandbox): Promise<void>;
}

export const until = async (done: () => boolean | Promise<boolean>, what: string) => {
  for (let i = 0; i < 1_200; i++) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
};

/** The supervisor behind a process or container sandbox (undefined in mode none). */
export function supervisorOf(sandbox: Sandbox): SupervisedSandbox | undefined {
  const inner = (sandbox as LazySandbox).inner;
  return inner !== undefined && 'runner' in inner ? (inner as SupervisedSandbox) : undefined;
}

const count = (storage: MemoryStorage, key: string) => {
  const value = storage.get(IDLE_PLUGIN, key);
  return value === undefined ? 0 : Number(text(value));
};

export function idleSuite(mode: SandboxMode, checks: IdleModeChecks, timeoutMs: number): void {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start() {
    const storage = new MemoryStorage();
    const { host, logs } = await startHost([FIXTURES], {
      mode,
      plugins: [IDLE_PLUGIN],
      storage,
      supervision: { restartBaseMs: 50, restartMaxMs: 200, healthIntervalMs: 0, graceMs: 1_000 },
    });
    cleanups.push(() => host.close());
    const events: { name: EventName; event: ReedEvents[EventName] }[] = [];
    for (const name of ['reed:sandbox:idled', 'reed:sandbox:woke', 'reed:sandbox:crashed'] as const)
      cleanups.push(
        subscribeEvent(name, (event) => {
          if (event.session === host.session.id) events.push({ name, event });
        }),
      );
    const state = () => host.pluginStatus(IDLE_PLUGIN).state;
    const call = async (fn: string, input = '') => text((await host.call(IDLE_PLUGIN, fn, input)).output);
    return { host, storage, events, logs, state, call, sandbox: host.sandbox(IDLE_PLUGIN) };
  }

  it(
    'idles after its idle_timeout (deactivate ran, nothing runs, storage kept), and wakes on the next call with the same result',
    async () => {
      const { host, storage, events, logs, state, call, sandbox } = await start();
      expect(await call('echo', 'before')).toBe('before');
      const pid = supervisorOf(sandbox)?.runner?.pid;
      if (mode !== 'none') expect(pid).toBeGreaterThan(0);
      await until(() => state() === 'idle', 'the plugin to idle');
      const idled = () => events.filter((e) => e.name === 'reed:sandbox:idled');
      const woke = () => events.filter((e) => e.name === 'reed:sandbox:woke');
      // Each idle ran deactivate (a slow machine may idle it between two calls: the counts follow the events). The
      // status says idle as the stop begins: deactivate's write may still be on its way (on a loaded machine it was,
      // now and then), so it is waited for.
      expect(idled().length).toBeGreaterThanOrEqual(1);
      await until(() => count(storage, 'deactivates') >= idled().length, 'deactivate to have run');
      expect(count(storage, 'deactivates')).toBe(idled().length);
      const first = idled()[0]?.event as ReedEvents['reed:sandbox:idled'] | undefined;
      expect(first?.reason).toBe('no call for 200 ms (idle_timeout)');
      expect(first?.idleTimeoutMs).toBe(200);
      expect(logs.some((l) => l.msg.startsWith('idled: ') && l.pluginId === IDLE_PLUGIN)).toBe(true);
      expect(sandbox.usage?.()).toBeUndefined();
      await checks.nothingRuns(host, sandbox);
      const wokeBefore = woke().length;

      // The next call wakes it: a new instance (hits starts over), init ran again, the storage is what it was.
      expect(await call('hits')).toBe('1');
      expect(woke().length).toBe(wokeBefore + 1);
      expect((woke()[wokeBefore]?.event as ReedEvents['reed:sandbox:woke'] | undefined)?.reason).toBe(
        'call "hits"',
      );
      expect(logs.some((l) => l.msg === 'woke: call "hits"')).toBe(true);
      expect(await call('echo', 'after')).toBe('after');
      expect(await call('counts')).toBe(`inits=${1 + woke().length} deactivates=${idled().length}`);
      // Idling is not a crash: no crash counted, no restart.
      expect(events.some((e) => e.name === 'reed:sandbox:crashed')).toBe(false);
      expect(host.pluginStatus(IDLE_PLUGIN).crashes).toBe(0);
      if (mode !== 'none') expect(supervisorOf(sandbox)?.runner?.pid).not.toBe(pid);
    },
    timeoutMs,
  );

  it(
    'answers every one of the calls that arrive while it wakes, with one wake',
    async () => {
      const { state, call, storage, events } = await start();
      await until(() => state() === 'idle', 'the plugin to idle');
      const inputs = Array.from({ length: 12 }, (_, i) => `call-${i}`);
      const answers = await Promise.all(inputs.map((input) => call('echo', input)));
      expect(answers).toEqual(inputs);
      expect(count(storage, 'inits')).toBe(2);
      expect(events.filter((e) => e.name === 'reed:sandbox:woke')).toHaveLength(1);
    },
    timeoutMs,
  );

  it(
    'a wake that fails answers the calls waiting with the start\u2019s code, and the plugin serves again once it can start',
    async () => {
      const { host, state, call, storage } = await start();
      await until(() => state() === 'idle', 'the plugin to idle');
      storage.put(IDLE_PLUGIN, 'fail_init', new Uint8Array([49]), 1 << 20);
      const outcomes = await Promise.allSettled([call('echo', 'a'), call('echo', 'b')]);
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        const error = (outcome as PromiseRejectedResult).reason as ReedError;
        expect(error.code).toBe('init_failed');
        expect(error.message).toMatch(/fail_init is set/);
      }
      // A failed wake counts as a failed start: the restart rules (process, container) or the next call (none).
      if (mode !== 'none') expect(host.pluginStatus(IDLE_PLUGIN).crashes).toBeGreaterThanOrEqual(1);
      storage.delete(IDLE_PLUGIN, 'fail_init');
      await until(
        () =>
          call('echo', 'again').then(
            (answer) => answer === 'again',
            () => false,
          ),
        'the plugin to serve again',
      );
    },
    timeoutMs,
  );

  it(
    'a host stopped while the plugin is idle, or while it wakes, leaves nothing running',
    async () => {
      for (const when of ['idle', 'waking at once', 'waking, runner made'] as const) {
        const { host, state, call, sandbox } = await start();
        await until(() => state() === 'idle', 'the plugin to idle');
        let answered: Promise<unknown> = Promise.resolve();
        if (when !== 'idle') {
          answered = call('echo', 'x').catch((error: ReedError) => error.code);
          if (when === 'waking, runner made' && mode !== 'none')
            await until(() => supervisorOf(sandbox)?.runner !== undefined, 'the wake to make a runner');
        }
        await host.close();
        // The call is answered either way (a result, or a code), never left hanging.
        await answered;
        expect(['stopped']).toContain(sandbox.status().state);
        await checks.nothingRuns(host, sandbox);
      }
    },
    timeoutMs * 2,
  );
}
