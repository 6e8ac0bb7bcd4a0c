import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TenantRegistry } from '../../src/tenants/registry.js';
import type { Tenant } from '../../src/tenants/tenant.js';
import { killHost, spawnHostFixture } from '../helpers/host-child.js';
import { filesPluginDir, loopsUnder, MiB, mountsUnder } from '../helpers/tenant-filesystem.js';
import { denied, type Fixture, startRegistry } from '../helpers/tenants.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const QUOTA = 4 * MiB;

// quotas.filesystem_bytes (docs/TENANTS.md, "Filesystem bytes"): the tenant's files/ is an ext4 image loop-mounted
// by the host, so the kernel bounds every write. Real loop mounts: the tests run as root. Process mode runs its
// runners from dist/: `npm run build` first.
describe.each(['none', 'process'] as const)('tenant filesystem_bytes, mode %s', (mode) => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    if (fixture !== undefined) {
      // Nothing mounted or attached once the registry is closed.
      expect(mountsUnder(fixture.dir)).toEqual([]);
      expect(loopsUnder(fixture.dir)).toEqual([]);
    }
    fixture = undefined;
  });

  const call = async (tenant: Tenant | undefined, fn: string, input: string) =>
    text((await (tenant as Tenant).call('fs.a', fn, input)).output);

  it('a tenant writing past its quota is refused with quota_exceeded; another tenant keeps writing; data survives a restart; a raised quota admits more', async () => {
    fixture = await startRegistry(mode, '[policy.permissions]\nfilesystem = "readwrite"\n');
    const plugins = filesPluginDir();
    const reg = (): TenantRegistry => (fixture as Fixture).registry;
    const small = await reg().create('fs-small', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: QUOTA },
    });
    const other = await reg().create('fs-other', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 16 * MiB },
    });
    expect(small.status().map((s) => [s.id, s.state, s.error?.message])).toEqual([
      ['fs.a', 'ready', undefined],
    ]);
    const files = join(reg().dataDirOf('fs-small'), 'files');
    expect(mountsUnder(files)).toEqual([files]);

    // At least the quota is usable: a file of the quota less what the empty file system holds fits.
    const before = reg().usage('fs-small').filesystem;
    expect(before?.limitBytes).toBe(QUOTA);
    expect((before?.usedBytes ?? 0) + (before?.availableBytes ?? 0)).toBeGreaterThanOrEqual(QUOTA);
    await call(small, 'put', 'kept.txt\nbefore the fill');
    await call(small, 'fill', `fits\n${QUOTA - 256 * 1024}`);

    // Past it: the guest got EDQUOT, the call answers quota_exceeded with quota filesystem_bytes.
    const refused = await denied(small.call('fs.a', 'fill', `past\n${2 * MiB}`), 'filesystem_bytes', QUOTA);
    expect(refused).toMatchObject({ details: { tenant: 'fs-small', causeCode: 'filesystem_full' } });
    expect(reg().usage('fs-small').denied.filesystem_bytes).toBe(1);
    // Full now (what the host's statfs sees); a call that never ran the plugin is still answered as it is.
    expect(reg().usage('fs-small').filesystem?.availableBytes).toBeLessThan(64 * 1024);
    await expect(small.call('fs.a', 'no-such-function', '')).rejects.toMatchObject({
      code: 'function_not_found',
    });
    expect(reg().usage('fs-small').filesystem?.usedBytes).toBeGreaterThanOrEqual(QUOTA - 256 * 1024);

    // The other tenant's plugin (same id) keeps writing.
    await call(other, 'fill', `big\n${8 * MiB}`);
    await call(other, 'put', 'n.txt\nother');
    expect(await call(other, 'get', 'n.txt')).toBe('other');

    // A restart: the same image is mounted again, the data is there.
    await fixture.restart();
    expect(mountsUnder(files)).toEqual([files]);
    expect(await call(reg().get('fs-small'), 'get', 'kept.txt')).toBe('before the fill');
    await denied(
      (reg().get('fs-small') as Tenant).call('fs.a', 'fill', `past\n${2 * MiB}`),
      'filesystem_bytes',
      QUOTA,
    );

    // Lowering is refused, before the tenant stops; raising grows the file system and admits more.
    await expect(
      reg().create('fs-small', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 2 * MiB } }),
    ).rejects.toMatchObject({ code: 'tenant_invalid', details: { field: 'quotas.filesystem_bytes' } });
    expect(await call(reg().get('fs-small'), 'get', 'kept.txt')).toBe('before the fill');
    const raised = await reg().create('fs-small', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 8 * MiB },
    });
    expect(reg().usage('fs-small').filesystem?.limitBytes).toBe(8 * MiB);
    await call(raised, 'fill', `past\n${2 * MiB}`);
    expect(await call(raised, 'get', 'kept.txt')).toBe('before the fill');
    // ~5.75 MiB held of at least 8 usable: 4 more do not fit.
    expect(reg().usage('fs-small').filesystem?.availableBytes).toBeLessThan(4 * MiB);
    await denied(raised.call('fs.a', 'fill', `more\n${4 * MiB}`), 'filesystem_bytes', 8 * MiB);

    // Removed: unmounted, its data (the image with it) kept aside.
    await reg().remove('fs-small');
    expect(mountsUnder(files)).toEqual([]);
    const kept = reg().removedData('fs-small');
    expect(kept).toHaveLength(1);
    expect(existsSync(join(kept[0]?.path ?? '', 'files.img'))).toBe(true);
  }, 180_000);

  it('a mount a killed host left is swept and the image mounted again, data kept', async () => {
    fixture = await startRegistry(mode, '[policy.permissions]\nfilesystem = "readwrite"\n');
    const plugins = filesPluginDir();
    const tenant = await fixture.registry.create('fs-left', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 2 * MiB },
    });
    await call(tenant, 'put', 'a.txt\nkept');
    const data = fixture.registry.dataDirOf('fs-left');
    await fixture.registry.close();
    expect(mountsUnder(fixture.dir)).toEqual([]);
    // What a host killed with its tenant running leaves: the image still mounted on files/.
    execFileSync('mount', [
      '-t',
      'ext4',
      '-o',
      'loop,nodev,nosuid,noexec',
      join(data, 'files.img'),
      join(data, 'files'),
    ]);
    expect(mountsUnder(join(data, 'files'))).toHaveLength(1);
    const registry = await fixture.restart();
    expect(mountsUnder(join(data, 'files'))).toEqual([join(data, 'files')]);
    expect(await call(registry.get('fs-left'), 'get', 'a.txt')).toBe('kept');
  }, 120_000);
});

describe('tenant filesystem_bytes after a host killed with SIGKILL', () => {
  it('the next registry on the data_dir unmounts what it left and mounts the image again, data kept; nothing left after', async () => {
    // Mode none: what is left is the mount itself (a process-mode runner exits with its connection).
    const fixture = await startRegistry('none', '[policy.permissions]\nfilesystem = "readwrite"\n');
    await fixture.registry.close();
    const plugins = filesPluginDir();
    const { child } = await spawnHostFixture('tenant-fs-host', [fixture.dir, plugins, 'none']);
    await killHost(child);
    const data = join(fixture.dir, 'data', 'tenants', 'fs-killed');
    // The killed host's mount is still there (nothing of its own ran).
    expect(mountsUnder(data)).toHaveLength(1);
    const registry = await fixture.restart();
    try {
      const files = join(registry.dataDirOf('fs-killed'), 'files');
      expect(mountsUnder(data)).toEqual([files]);
      expect(text((await (registry.get('fs-killed') as Tenant).call('fs.a', 'get', 'a.txt')).output)).toBe(
        'kept',
      );
    } finally {
      await registry.close();
    }
    expect(mountsUnder(fixture.dir)).toEqual([]);
    expect(loopsUnder(fixture.dir)).toEqual([]);
  }, 180_000);
});

describe('tenant filesystem_bytes added to a tenant that holds data', () => {
  it('is refused (its file system would hide the data); the tenant goes on with its spec and its data', async () => {
    const fixture = await startRegistry('none', '[policy.permissions]\nfilesystem = "readwrite"\n');
    try {
      const plugins = filesPluginDir();
      const tenant = await fixture.registry.create('fs-late', { plugin_dirs: [plugins] });
      await tenant.call('fs.a', 'put', 'a.txt\nbefore');
      await expect(
        fixture.registry.create('fs-late', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 4 * MiB } }),
      ).rejects.toMatchObject({
        code: 'tenant_invalid',
        message: expect.stringMatching(/already holds its plugins' data/),
        details: { field: 'quotas.filesystem_bytes' },
      });
      const back = fixture.registry.get('fs-late') as Tenant;
      expect(back.spec).toEqual({ plugin_dirs: [plugins] });
      expect(text((await back.call('fs.a', 'get', 'a.txt')).output)).toBe('before');
      expect(existsSync(join(fixture.registry.dataDirOf('fs-late'), 'files.img'))).toBe(false);
      expect(mountsUnder(fixture.dir)).toEqual([]);
    } finally {
      await fixture.registry.close();
    }
  }, 120_000);
});

describe('tenant filesystem_bytes in reed.toml', () => {
  it('a tenant declared with it starts on its own file system, unmounted at close', async () => {
    const fixture = await startRegistry(
      'none',
      '[policy.permissions]\nfilesystem = "readwrite"\n[tenants.c]\nplugin_dirs = ["plugins-c"]\n[tenants.c.quotas]\nfilesystem_bytes = 2097152\n',
    );
    try {
      const files = join(fixture.registry.dataDirOf('c'), 'files');
      expect(mountsUnder(files)).toEqual([files]);
      expect(fixture.registry.usage('c').filesystem?.limitBytes).toBe(2 * MiB);
      expect(fixture.registry.usage('a').filesystem).toBeUndefined();
    } finally {
      await fixture.registry.close();
    }
    expect(mountsUnder(fixture.dir)).toEqual([]);
    expect(loopsUnder(fixture.dir)).toEqual([]);
  }, 120_000);
});
