import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { killHost, spawnHostFixture, startSweepingHost } from '../helpers/host-child.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { alive } from '../helpers/processes.js';

describe('a host killed with SIGKILL in the middle of calls', () => {
  it('leaves no runner process, and the next host removes its sandbox directories', async () => {
    const runtimeDir = tempDir('reed-death-');
    const { child, ready } = await spawnHostFixture('busy-host', [runtimeDir]);
    const pids = ready.map(Number);
    expect(pids.every(alive)).toBe(true);
    await new Promise((r) => setTimeout(r, 200)); // calls in flight
    await killHost(child);
    const deadline = Date.now() + 5_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pids.filter(alive)).toEqual([]);
    expect(readdirSync(join(runtimeDir, 'sandboxes')).length).toBe(2); // what the dead host left

    const next = await startSweepingHost(runtimeDir);
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
    await next.close();
  });
});

describe('the orphan sweep', () => {
  it('never touches a sandbox whose host is alive, and removes one whose owner record is unreadable', async () => {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const { newSession, OWNER_FILE, sweepOrphans } = await import('../../src/backends/shared/session.js');
    const runtimeDir = tempDir();
    mkdirSync(join(runtimeDir, 'sandboxes', 'live'), { recursive: true });
    writeFileSync(
      join(runtimeDir, 'sandboxes', 'live', OWNER_FILE),
      JSON.stringify({ ...newSession(), pluginId: 'p' }),
    );
    mkdirSync(join(runtimeDir, 'sandboxes', 'half-made'));
    expect(await sweepOrphans(runtimeDir)).toEqual({ dirs: 1, runners: 0 });
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual(['live']);
  });
});

describe('a host in container mode killed with SIGKILL', () => {
  it('leaves no container of its session after the next host starts', async () => {
    const Docker = (await import('dockerode')).default;
    const docker = new Docker();
    const { chmodSync } = await import('node:fs');
    const runtimeDir = tempDir('reed-death-');
    chmodSync(runtimeDir, 0o755);
    const { child } = await spawnHostFixture('busy-host', [runtimeDir, 'container']);
    const mine = async () =>
      (
        await docker.listContainers({
          all: true,
          filters: { label: ['reed.managed=true', 'reed.plugin.id=example.hello'] },
        })
      ).filter((c) => Number(c.Labels['reed.host.pid']) === child.pid);
    expect(await mine()).toHaveLength(1);
    await killHost(child);
    const next = await startSweepingHost(runtimeDir);
    expect(await mine()).toEqual([]);
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
    await next.close();
  }, 120_000);
});

describe('the container sweep across pid namespaces (a host on the machine beside one under docker-compose)', () => {
  it('leaves a foreign host it cannot judge and containers no host made; removes those whose host container is gone or stopped', async () => {
    const Docker = (await import('dockerode')).default;
    const { ensureRunnerImage } = await import('../../src/backends/container/images.js');
    const { sweepContainers } = await import('../../src/backends/container/sweep.js');
    const docker = new Docker();
    const image = await ensureRunnerImage({ docker, logger: pino({ level: 'silent' }) });
    const foreign = {
      'reed.managed': 'true',
      'reed.host.session': 'other',
      'reed.host.pid': '1',
      'reed.host.pidns': 'pid:[1]',
    };
    const make = (labels: Record<string, string>) =>
      docker.createContainer({ Image: image, Labels: labels, NetworkDisabled: true });
    const unjudgeable = await make({ ...foreign, 'reed.plugin.id': 'sweep.unjudgeable' });
    const hostGone = await make({ ...foreign, 'reed.host.container': 'f'.repeat(64) });
    // `unjudgeable` was created, never started: a host in it would be dead.
    const hostStopped = await make({ ...foreign, 'reed.host.container': unjudgeable.id });
    // Only the image's labels (reed.managed among them), as a container someone runs from our images has.
    const notOurs = await make({});
    try {
      await sweepContainers(docker);
      const left = await docker.listContainers({
        all: true,
        filters: { label: ['reed.host.pidns=pid:[1]'] },
      });
      expect(left.map((c) => c.Id)).toEqual([unjudgeable.id]);
      expect((await notOurs.inspect()).Config.Labels['reed.managed']).toBe('true');
    } finally {
      for (const c of [unjudgeable, hostGone, hostStopped, notOurs])
        await c.remove({ force: true }).catch(() => {});
    }
  }, 120_000);
});
