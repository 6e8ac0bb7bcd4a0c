// Replicas in container mode (issue 18 part 4, mode-agnostic): the same ReplicaSet over supervised containers.
// test/fixtures/replicas/who, copied with `replicas = 2`, answers with an id each instance draws at init. Runs from
// dist/ in the runner image (npm run build); needs Docker (scripts/setup.sh). States are polled, never timed.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { LABEL_SESSION } from '../../src/backends/container/labels.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { ReplicaSet } from '../../src/backends/replica-set.js';
import type { ReedError } from '../../src/errors.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { until } from '../helpers/idle.js';
import { tempDir } from '../helpers/plugin-tree.js';

const PLUGIN = 'fixture.replicas';
const docker = new Docker();

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('replicas, container mode', () => {
  it('two containers answer in turn; a killed one fails only its call in flight and comes back; stop removes both', async () => {
    const dir = tempDir('reed-replicas-container-');
    const plugin = join(dir, 'who');
    cpSync(join(REPO, 'test/fixtures/replicas/who'), plugin, { recursive: true });
    const toml = join(plugin, 'plugin.toml');
    writeFileSync(toml, readFileSync(toml, 'utf8').replace('replicas = 3', 'replicas = 2'));
    const storage = new MemoryStorage();
    const { host } = await startHost([dir], {
      mode: 'container',
      plugins: [PLUGIN],
      storage,
      supervision: { restartBaseMs: 50, restartMaxMs: 200, healthIntervalMs: 0, graceMs: 2_000 },
    });
    cleanups.push(() => host.close());
    const mine = () =>
      docker.listContainers({ all: true, filters: { label: [`${LABEL_SESSION}=${host.session.id}`] } });
    const set = (host.sandbox(PLUGIN) as LazySandbox).inner as ReplicaSet;
    const call = async (fn: string) => text((await host.call(PLUGIN, fn)).output);
    const marked = (what: string) => storage.list(PLUGIN, `${what}-`, 100).length;

    expect(set.replicas).toHaveLength(2);
    expect(host.pluginStatus(PLUGIN)).toMatchObject({ state: 'ready', replicas: { total: 2, ready: 2 } });
    expect(await mine()).toHaveLength(2);
    expect(marked('init')).toBe(2);
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) answers.push(await call('who'));
    const ids = new Set(answers);
    expect(ids.size).toBe(2);
    for (const id of ids) expect(answers.filter((a) => a === id)).toHaveLength(2);

    // One call held in flight on each; one container killed: only its call fails.
    const held = [call('wait'), call('wait')].map((p) =>
      p.then(
        (id) => ({ id }),
        (error: ReedError) => ({ error }),
      ),
    );
    await until(() => set.inFlight(0) === 1 && set.inFlight(1) === 1, 'a call in flight on each replica');
    const [victim] = await mine();
    if (victim === undefined) throw new Error('no container of this host');
    await docker.getContainer(victim.Id).kill({ signal: 'SIGKILL' });
    await until(() => set.inFlight(0) + set.inFlight(1) === 1, "the killed replica's call to fail");
    storage.put(PLUGIN, 'go', new TextEncoder().encode('1'), 1_000_000);
    const outcomes = await Promise.all(held);
    const failed = outcomes.flatMap((o) => ('error' in o ? [o.error.code] : []));
    expect(failed).toEqual(['sandbox_crashed']);
    const survivor = outcomes.flatMap((o) => ('id' in o ? [o.id] : []));
    expect(survivor).toHaveLength(1);
    expect(ids.has(survivor[0] as string)).toBe(true);

    // Calls after the loss all succeed; the replica comes back in a new container.
    expect(await Promise.all(Array.from({ length: 6 }, () => call('who')))).toHaveLength(6);
    await until(
      () => host.pluginStatus(PLUGIN).replicas?.ready === 2,
      'the killed replica to be ready again',
    );
    const now = await mine();
    const running = now.filter((c) => c.State === 'running').map((c) => c.Id);
    expect(running).toHaveLength(2);
    expect(running).not.toContain(victim.Id);
    expect(marked('init')).toBe(3);

    await host.close();
    await until(async () => (await mine()).length === 0, 'no container of this host');
    expect(marked('deactivate')).toBe(2);
  }, 300_000);
});
