import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenants/tenant.js';
import { filesPluginDir, loopsUnder, MiB, mountsUnder } from '../helpers/tenant-filesystem.js';
import { type Fixture, startRegistry } from '../helpers/tenants.js';

// quotas.filesystem_bytes against the disk under data_dir and against a damaged image (docs/TENANTS.md,
// "Filesystem bytes"). Real tmpfs, loop mounts, mkfs.ext4, e2fsck and debugfs: the tests run as root, and fail (never
// skip) when one is missing.
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const call = async (tenant: Tenant | undefined, fn: string, input: string) => {
  expect(tenant).toBeDefined();
  return text((await (tenant as Tenant).call('fs.a', fn, input)).output);
};
const RW = '[policy.permissions]\nfilesystem = "readwrite"\n';
/** Bytes the disk holds for the file (st_blocks): an image whose blocks are all reserved holds at least its size. */
const onDisk = (path: string) => lstatSync(path).blocks * 512;

let fixture: Fixture | undefined;
/** tmpfs mounts the test made (each a data_dir). */
const tmpfs: string[] = [];

afterEach(async () => {
  const dir = fixture?.dir;
  try {
    await fixture?.registry.close();
  } finally {
    fixture = undefined;
    // Whatever a failed test left: the tenant mounts (deepest first), their loop devices, then the tmpfs.
    if (dir !== undefined)
      for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length))
        spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    for (const m of tmpfs.splice(0)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    if (dir !== undefined)
      for (const line of loopsUnder(dir))
        spawnSync('losetup', ['-d', line.split(':')[0] ?? ''], { stdio: 'ignore' });
  }
  if (dir !== undefined) {
    expect(mountsUnder(dir)).toEqual([]);
    expect(loopsUnder(dir)).toEqual([]);
  }
});

/** `<dir>/data` (the fixture's data_dir) made a tmpfs of `mib` MiB before the registry starts. */
const onTmpfs = (mib: number) => (dir: string) => {
  const data = join(dir, 'data');
  mkdirSync(data);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'reed-test-data', data]);
  tmpfs.push(data);
};

describe('tenant filesystem_bytes reserves its image on the disk under data_dir', () => {
  it('a second tenant whose image the disk cannot hold is refused at creation (tenant_volume_no_space), nothing of it left; the first keeps writing its whole quota', async () => {
    fixture = await startRegistry('none', RW, {}, onTmpfs(36));
    const reg = (fixture as Fixture).registry;
    const plugins = filesPluginDir();
    const a = await reg.create('disk-a', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 24 * MiB } });
    await call(a, 'put', 'kept.txt\nwritten first');

    const error = await reg
      .create('disk-b', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 24 * MiB } })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({
      code: 'tenant_volume_no_space',
      details: {
        field: 'quotas.filesystem_bytes',
        tenant: 'disk-b',
        image: expect.stringMatching(/\/tenants\/disk-b\/data-[^/]+\/files\.img$/),
        neededBytes: expect.any(Number),
        freeBytes: expect.any(Number),
      },
    });
    const { neededBytes, freeBytes, image } = (error as { details: Record<string, number | string> }).details;
    expect(neededBytes).toBeGreaterThan(24 * MiB);
    expect(freeBytes).toBeLessThan(neededBytes as number);
    expect((error as Error).message).toContain(
      `tenant "disk-b": its file system image ${image} needs ${neededBytes}`,
    );
    expect((error as Error).message).toContain(`${freeBytes} bytes free`);
    // Nothing of it: no tenant, no image, no data directory, no mount, no loop device.
    expect(reg.get('disk-b')).toBeUndefined();
    expect(existsSync(image as string)).toBe(false);
    expect(existsSync(dirname(image as string))).toBe(false);
    expect(existsSync(join(reg.config.dataDir, 'tenants', 'disk-b', 'tenant.json'))).toBe(false);
    expect(mountsUnder(join(reg.config.dataDir, 'tenants', 'disk-b'))).toEqual([]);
    expect(loopsUnder(join(reg.config.dataDir, 'tenants', 'disk-b'))).toEqual([]);

    // The first's image holds its blocks on the tmpfs: none of them is left to be found at write time.
    const imageA = join(reg.dataDirOf('disk-a'), 'files.img');
    expect(onDisk(imageA)).toBeGreaterThanOrEqual(lstatSync(imageA).size);
    // It writes all of its quota (less what the empty file system holds), and keeps what it wrote before.
    await call(a, 'fill', `big\n${24 * MiB - 512 * 1024}`);
    expect(await call(a, 'get', 'kept.txt')).toBe('written first');
    const registry = await (fixture as Fixture).restart();
    expect(await call(registry.get('disk-a'), 'get', 'kept.txt')).toBe('written first');
  }, 180_000);

  it('raising a quota past what the disk holds is refused (tenant_volume_no_space); the tenant goes on with its spec, its data and its image as they were', async () => {
    fixture = await startRegistry('none', RW, {}, onTmpfs(36));
    const reg = (fixture as Fixture).registry;
    const plugins = filesPluginDir();
    await reg.create('disk-a', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 8 * MiB } });
    await call(reg.get('disk-a'), 'put', 'kept.txt\nbefore');
    const image = join(reg.dataDirOf('disk-a'), 'files.img');
    const size = lstatSync(image).size;
    await expect(
      reg.create('disk-a', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 40 * MiB } }),
    ).rejects.toMatchObject({
      code: 'tenant_volume_no_space',
      details: { tenant: 'disk-a', image, neededBytes: expect.any(Number), freeBytes: expect.any(Number) },
    });
    const back = reg.get('disk-a') as Tenant;
    expect(back.spec.quotas).toEqual({ filesystem_bytes: 8 * MiB });
    expect(await call(back, 'get', 'kept.txt')).toBe('before');
    expect(lstatSync(image).size).toBe(size);
    expect(reg.usage('disk-a').filesystem?.limitBytes).toBe(8 * MiB);
    // A raise the disk holds is taken, and reserved too.
    await reg.create('disk-a', { plugin_dirs: [plugins], quotas: { filesystem_bytes: 16 * MiB } });
    expect(reg.usage('disk-a').filesystem?.limitBytes).toBe(16 * MiB);
    expect(lstatSync(image).size).toBeGreaterThan(size);
    expect(onDisk(image)).toBeGreaterThanOrEqual(lstatSync(image).size);
    expect(await call(reg.get('disk-a'), 'get', 'kept.txt')).toBe('before');
  }, 180_000);

  it('a sparse image (what an earlier version made) gets its blocks reserved at the start, its data kept', async () => {
    fixture = await startRegistry('none', RW);
    const plugins = filesPluginDir();
    await fixture.registry.create('disk-old', {
      plugin_dirs: [plugins],
      quotas: { filesystem_bytes: 4 * MiB },
    });
    await call(fixture.registry.get('disk-old'), 'put', 'kept.txt\nold');
    const image = join(fixture.registry.dataDirOf('disk-old'), 'files.img');
    await fixture.registry.close();
    // A copy with holes where it holds zeros (its owner and mode kept), as ftruncate alone made it before.
    execFileSync('cp', ['--sparse=always', '--preserve=mode,ownership', image, `${image}.sparse`]);
    renameSync(`${image}.sparse`, image);
    expect(onDisk(image)).toBeLessThan(lstatSync(image).size / 2);
    const registry = await fixture.restart();
    expect(onDisk(image)).toBeGreaterThanOrEqual(lstatSync(image).size);
    expect(await call(registry.get('disk-old'), 'get', 'kept.txt')).toBe('old');
  }, 120_000);
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
