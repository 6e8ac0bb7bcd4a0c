import { afterEach, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenants/tenant.js';
import { filesPluginDir, loopsUnder, MiB, mountsUnder } from '../helpers/tenant-filesystem.js';
import { denied, type Fixture, startRegistry } from '../helpers/tenants.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// quotas.filesystem_bytes in container mode: the container's bind mount of the plugin's data directory is on the
// tenant's loop-mounted file system, so the kernel bounds it as in the other modes. Runners start from dist/ in
// the runner image: `npm run build` first; needs Docker (scripts/setup.sh) and root (loop mounts).
describe('tenant filesystem_bytes, mode container (runc)', () => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    if (fixture !== undefined) {
      expect(mountsUnder(fixture.dir)).toEqual([]);
      expect(loopsUnder(fixture.dir)).toEqual([]);
    }
    fixture = undefined;
  });

  it('a container writing past its tenant\u2019s quota is refused with quota_exceeded; another tenant keeps writing', async () => {
    fixture = await startRegistry(
      'container',
      '[sandbox]\nruntime = "runc"\n[policy.permissions]\nfilesystem = "readwrite"\n',
    );
    const plugins = filesPluginDir();
    const small = await fixture.registry.create('fs-small', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 4 * MiB },
    });
    const other = await fixture.registry.create('fs-other', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 16 * MiB },
    });
    expect(small.status().map((s) => [s.id, s.state, s.mode])).toEqual([['fs.a', 'ready', 'container']]);
    const call = async (tenant: Tenant, fn: string, input: string) =>
      text((await tenant.call('fs.a', fn, input)).output);
    await call(small, 'put', 'kept.txt\nin the container');
    expect(await call(small, 'get', 'kept.txt')).toBe('in the container');
    await denied(small.call('fs.a', 'fill', `past\n${6 * MiB}`), 'filesystem_bytes', 4 * MiB);
    expect(fixture.registry.usage('fs-small').filesystem?.availableBytes).toBeLessThan(64 * 1024);
    await call(other, 'fill', `big\n${8 * MiB}`);
    expect(fixture.registry.usage('fs-other').filesystem?.usedBytes).toBeGreaterThanOrEqual(8 * MiB);
  }, 600_000);
});
