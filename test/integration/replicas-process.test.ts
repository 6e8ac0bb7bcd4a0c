// Replicas in process mode (issue 18 part 4, mode-agnostic): `[sandbox] replicas = 3` runs three supervised runners
// of one plugin behind a ReplicaSet (src/backends/replica-set.ts). test/fixtures/replicas/who (built by the set-up
// from plugin.c) answers with an id each instance draws at init, so a test sees which runner answered. Runs from
// dist/ (npm run build). States are polled, never timed.
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import { poolsOf } from '../../src/backends/pool/warm-pool.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { ReplicaSet } from '../../src/backends/replica-set.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { ReedError } from '../../src/errors.js';
import { subscribeEvent } from '../../src/events/events.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { until } from '../helpers/idle.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { alive } from '../helpers/processes.js';

const PLUGIN = 'fixture.replicas';
const FIXTURES = join(REPO, 'test/fixtures/replicas');

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(fixtures = FIXTURES, reedToml = '') {
  const storage = new MemoryStorage();
  const { host } = await startHost([fixtures], {
    reedToml,
    mode: 'process',
    plugins: [PLUGIN],
    storage,
    supervision: { restartBaseMs: 50, restartMaxMs: 200, healthIntervalMs: 0, graceMs: 1_000 },
  });
  cleanups.push(() => host.close());
  const set = (host.sandbox(PLUGIN) as LazySandbox).inner as ReplicaSet;
  const pids = () => set.replicas.map((r) => (r as SupervisedSandbox).runner?.pid);
  const call = async (fn: string) => text((await host.call(PLUGIN, fn)).output);
  /** Replicas that ran init or deactivate: each marks a key of its own ("init-<id>"). */
  const count = (what: string) => storage.list(PLUGIN, `${what}-`, 100).length;
  return { host, storage, set, pids, call, count };
}

/** This host's runner directories under runtime_dir/sandboxes (socket, work directory). */
function runnerDirs(host: PluginHost): string[] {
  try {
    const dir = join(host.config.runtimeDir, 'sandboxes');
    return readdirSync(dir).filter((name) => name.startsWith(`${host.session.id.slice(0, 8)}-`));
  } catch {
    return [];
  }
}

describe('replicas, process mode', () => {
  it('starts three runners (init in each), spreads calls over them, and stops them all (deactivate in each, nothing left)', async () => {
    const { host, storage, set, pids, call, count } = await start();
    expect(set.replicas).toHaveLength(3);
    const started = pids();
    expect(new Set(started).size).toBe(3);
    for (const pid of started) expect(alive(pid as number)).toBe(true);
    expect(count('init')).toBe(3);
    expect(host.pluginStatus(PLUGIN)).toMatchObject({ state: 'ready', replicas: { total: 3, ready: 3 } });
    expect(await host.sandbox(PLUGIN).health()).toEqual({ ok: true });

    // One call at a time: each finds every replica free, and the round robin takes them in turn.
    const answers: string[] = [];
    for (let i = 0; i < 9; i++) answers.push(await call('who'));
    const ids = new Set(answers);
    expect(ids.size).toBe(3);
    for (const id of ids) expect(answers.filter((a) => a === id)).toHaveLength(3);

    // Calls at once: the fewest in flight first, so each replica holds two of six.
    const held = Array.from({ length: 6 }, () => call('wait'));
    await until(() => [0, 1, 2].every((i) => set.inFlight(i) === 2), 'two calls in flight on each replica');
    storage.put(PLUGIN, 'go', new TextEncoder().encode('1'), 1_000_000);
    const released = await Promise.all(held);
    for (const id of ids) expect(released.filter((a) => a === id)).toHaveLength(2);

    await host.close();
    await until(() => started.every((pid) => !alive(pid as number)), 'every runner to be gone');
    expect(count('deactivate')).toBe(3);
    expect(runnerDirs(host)).toEqual([]);
    expect(set.status()).toMatchObject({ state: 'stopped', replicas: { total: 3, ready: 0 } });
  }, 120_000);

  it('a SIGKILLed replica fails only its own calls in flight (sandbox_crashed); the others answer, and it comes back', async () => {
    const { host, storage, set, pids, call } = await start();
    const before = new Set<string>();
    for (let i = 0; i < 3; i++) before.add(await call('who'));
    expect(before.size).toBe(3);

    const held = Array.from({ length: 6 }, () =>
      call('wait').then(
        (id) => ({ id }),
        (error: ReedError) => ({ error }),
      ),
    );
    await until(() => [0, 1, 2].every((i) => set.inFlight(i) === 2), 'two calls in flight on each replica');
    const victim = pids()[0] as number;
    process.kill(victim, 'SIGKILL');
    // Its two calls fail; the others' four wait for "go".
    await until(() => set.inFlight(0) === 0, "the killed replica's calls to fail");
    expect(set.inFlight(1) + set.inFlight(2)).toBe(4);
    expect(host.pluginStatus(PLUGIN).state).toBe('ready');
    storage.put(PLUGIN, 'go', new TextEncoder().encode('1'), 1_000_000);
    const outcomes = await Promise.all(held);
    const failed = outcomes.flatMap((o) => ('error' in o ? [o.error] : []));
    expect(failed.map((e) => ({ code: e.code, pluginId: e.pluginId }))).toEqual([
      { code: 'sandbox_crashed', pluginId: PLUGIN },
      { code: 'sandbox_crashed', pluginId: PLUGIN },
    ]);
    const survivors = new Set(outcomes.flatMap((o) => ('id' in o ? [o.id] : [])));
    expect(survivors.size).toBe(2);
    for (const id of survivors) expect(before.has(id)).toBe(true);
    const lost = [...before].find((id) => !survivors.has(id));

    // Calls made after the loss all succeed, whether or not the replica is back yet.
    const after = await Promise.all(Array.from({ length: 12 }, () => call('who')));
    expect(after).toHaveLength(12);

    // Its supervisor restarts it: a new runner, a new instance (a new id), and three replicas ready again.
    await until(
      () => host.pluginStatus(PLUGIN).replicas?.ready === 3,
      'the killed replica to be ready again',
    );
    const restarted = pids()[0] as number;
    expect(restarted).not.toBe(victim);
    expect(alive(victim)).toBe(false);
    const again = new Set<string>();
    for (let i = 0; i < 3; i++) again.add(await call('who'));
    expect(again.size).toBe(3);
    expect(again.has(lost as string)).toBe(false);
    expect(host.pluginStatus(PLUGIN)).toMatchObject({
      state: 'ready',
      crashes: 1,
      lastError: { code: 'sandbox_crashed' },
      replicas: { total: 3, ready: 3 },
    });
  }, 120_000);

  it('with idle_timeout each replica idles on its own; calls that find the others busy wake one each', async () => {
    const dir = tempDir('reed-replicas-idle-');
    const plugin = join(dir, 'who');
    cpSync(FIXTURES, dir, { recursive: true });
    const toml = join(plugin, 'plugin.toml');
    writeFileSync(
      toml,
      readFileSync(toml, 'utf8').replace('replicas = 3', 'replicas = 2\nidle_timeout = "200ms"'),
    );
    const { host, storage, set, call, count } = await start(dir);
    let woke = 0;
    cleanups.push(
      subscribeEvent('reed:sandbox:woke', (event) => {
        if (event.session === host.session.id) woke++;
      }),
    );
    await until(() => host.pluginStatus(PLUGIN).state === 'idle', 'both replicas to idle');
    expect(host.pluginStatus(PLUGIN).replicas).toEqual({ total: 2, ready: 0 });
    await until(() => count('deactivate') === 2, 'deactivate to have run in both');

    // Two calls at once: the second finds the first's replica busy waking, and wakes the other.
    const held = [call('wait'), call('wait')];
    await until(() => set.inFlight(0) === 1 && set.inFlight(1) === 1, 'a call on each replica');
    storage.put(PLUGIN, 'go', new TextEncoder().encode('1'), 1_000_000);
    expect(new Set(await Promise.all(held)).size).toBe(2);
    expect(woke).toBe(2);

    // Idle again: one call wakes one replica only.
    await until(() => host.pluginStatus(PLUGIN).state === 'idle', 'both replicas to idle again');
    await call('who');
    expect(woke).toBe(3);
    expect(host.pluginStatus(PLUGIN).crashes).toBe(0);
  }, 120_000);

  it('a replica takes a warm runner from the pool like any start (here: its restart after a SIGKILL)', async () => {
    const { host, set, pids } = await start(FIXTURES, '[sandbox.pool]\nprocess = 1\n');
    const [pool] = poolsOf(host.session.id);
    if (pool === undefined) throw new Error('no warm pool');
    await pool.filled();
    const warm = (pool.idleRunners() as unknown as RunnerProcess[]).map((r) => r.pid);
    expect(warm).toHaveLength(1);
    const victim = pids()[1] as number;
    process.kill(victim, 'SIGKILL');
    await until(
      () => pids()[1] !== victim && host.pluginStatus(PLUGIN).replicas?.ready === 3,
      'the killed replica to be ready again',
    );
    expect(pids()[1]).toBe(warm[0]);
    expect(set.replicas.map((r) => r.status().state)).toEqual(['ready', 'ready', 'ready']);
  }, 120_000);
});
