import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';

// The set-up script (scripts/setup.sh) installs and starts this engine when none answers. A missing engine is a
// failure here, never a skip: container mode depends on it.
describe('Docker engine', () => {
  const docker = new Docker({ timeout: 10_000 });

  it('answers through dockerode', async () => {
    await expect(docker.ping()).resolves.toBeDefined();
    const version = await docker.version();
    expect(version.ApiVersion).toMatch(/^\d+\.\d+$/);
  });

  it('has the gVisor runtime registered for container mode', async () => {
    const info = (await docker.info()) as { Runtimes?: Record<string, { path?: string }> };
    expect(Object.keys(info.Runtimes ?? {})).toEqual(expect.arrayContaining(['runc', 'runsc']));
  });

  it('lists containers by label, which the orphan sweep will rely on', async () => {
    const containers = await docker.listContainers({
      all: true,
      filters: { label: ['reed.managed=true', 'reed.host.session=no-such-session'] },
    });
    expect(containers).toEqual([]);
  });
});
