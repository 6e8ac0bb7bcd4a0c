import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenants/tenant.js';
import { filesPluginDir, loopsUnder, MiB, mountsUnder } from '../helpers/tenant-filesystem.js';
import { type Fixture, startRegistry } from '../helpers/tenants.js';

// quotas.filesystem_bytes against a damaged image (docs/TENANTS.md, "Filesystem bytes"). Real loop mounts,
// mkfs.ext4, e2fsck and debugfs: the tests run as root, and fail (never skip) when one is missing.
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const call = async (tenant: Tenant | undefined, fn: string, input: string) => {
  expect(tenant).toBeDefined();
  return text((await (tenant as Tenant).call('fs.a', fn, input)).output);
};
const RW = '[policy.permissions]\nfilesystem = "readwrite"\n';

let fixture: Fixture | undefined;

afterEach(async () => {
  const dir = fixture?.dir;
  try {
    await fixture?.registry.close();
  } finally {
    fixture = undefined;
    // Whatever a failed test left: the tenant mounts (deepest first), their loop devices.
    if (dir !== undefined)
      for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length))
        spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    if (dir !== undefined)
      for (const line of loopsUnder(dir))
        spawnSync('losetup', ['-d', line.split(':')[0] ?? ''], { stdio: 'ignore' });
  }
  if (dir !== undefined) {
    expect(mountsUnder(dir)).toEqual([]);
    expect(loopsUnder(dir)).toEqual([]);
  }
});

/** The exit status of `e2fsck -p` on a copy of `image` (the copy removed): what the host's start will meet. */
function preenStatus(image: string): number | null {
  const copy = `${image}.copy`;
  execFileSync('cp', ['--sparse=always', image, copy]);
  try {
    return spawnSync('e2fsck', ['-p', copy], { stdio: 'ignore' }).status;
  } finally {
    rmSync(copy, { force: true });
  }
}

describe('tenant filesystem_bytes over a damaged image', () => {
  it('an image e2fsck -p repairs (exit 1) is mounted and served, with a warning naming the tenant and the image', async () => {
    const plugins = filesPluginDir();
    fixture = await startRegistry(
      'none',
      `${RW}[tenants.c]\nplugin_dirs = [${JSON.stringify(plugins)}]\n[tenants.c.quotas]\nfilesystem_bytes = 2097152\n`,
    );
    await call(fixture.registry.get('c'), 'put', 'kept.txt\nbefore the damage');
    const image = join(fixture.registry.dataDirOf('c'), 'files.img');
    await fixture.registry.close();
    // A block of the file marked free in the bitmap, the file system marked not clean: e2fsck -p fixes it, exit 1.
    const block = execFileSync('debugfs', ['-R', 'bmap /fs.a/kept.txt 0', image], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    expect(block).toMatch(/^[1-9][0-9]*$/);
    execFileSync('debugfs', ['-w', '-R', `freeb ${block}`, image], { stdio: 'ignore' });
    execFileSync('debugfs', ['-w', '-R', 'ssv state 0', image], { stdio: 'ignore' });
    expect(preenStatus(image)).toBe(1);

    fixture.logs.length = 0;
    const registry = await fixture.restart();
    expect(await call(registry.get('c'), 'get', 'kept.txt')).toBe('before the damage');
    expect(fixture.logs).toContainEqual(
      expect.objectContaining({
        level: 40,
        tenant: 'c',
        image,
        exitCode: 1,
        msg: expect.stringMatching(/exit 1/),
      }),
    );
    // Repaired: the next check finds it clean.
    await registry.close();
    expect(preenStatus(image)).toBe(0);
  }, 120_000);

  it('an image e2fsck cannot repair (exit 4 or above) leaves that tenant out with tenant_volume_damaged, reed.toml tenant or runtime one; every other tenant is served', async () => {
    const plugins = filesPluginDir();
    fixture = await startRegistry(
      'none',
      `${RW}[tenants.c]\nplugin_dirs = [${JSON.stringify(plugins)}]\n[tenants.c.quotas]\nfilesystem_bytes = 2097152\n`,
    );
    const reg = () => (fixture as Fixture).registry;
    await reg().create('broken', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 2 * MiB } });
    await reg().create('sound', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 2 * MiB } });
    for (const id of ['c', 'broken', 'sound']) await call(reg().get(id), 'put', `kept.txt\nof ${id}`);
    const images = ['c', 'broken'].map((id) => join(reg().dataDirOf(id), 'files.img'));
    await reg().close();
    // The primary superblock zeroed: a file system this small has no backup to fall back on.
    for (const image of images) {
      execFileSync('dd', ['if=/dev/zero', `of=${image}`, 'bs=1024', 'seek=1', 'count=1', 'conv=notrunc'], {
        stdio: 'ignore',
      });
      expect(preenStatus(image)).toBeGreaterThanOrEqual(4);
    }

    fixture.logs.length = 0;
    const registry = await fixture.restart();
    expect(
      registry
        .list()
        .map((t) => t.id)
        .sort(),
    ).toEqual(['a', 'b', 'default', 'sound']);
    expect(await call(registry.get('sound'), 'get', 'kept.txt')).toBe('of sound');
    for (const [i, id] of ['c', 'broken'].entries()) {
      expect(fixture.logs).toContainEqual(
        expect.objectContaining({
          level: 50,
          tenant: id,
          code: 'tenant_volume_damaged',
          msg: expect.stringContaining(`tenant "${id}" could not start (tenant_volume_damaged: `),
        }),
      );
      const logged = fixture.logs.find((l) => l.tenant === id && l.code === 'tenant_volume_damaged');
      expect(logged?.msg).toContain(images[i]);
      expect(mountsUnder(join(images[i] as string, '..'))).toEqual([]);
    }
    // The reed.toml tenant left out is still reed.toml's: not created again through the API.
    await expect(registry.create('c', { plugin_dirs: [plugins] })).rejects.toMatchObject({
      code: 'tenant_exists',
    });
  }, 180_000);
});
