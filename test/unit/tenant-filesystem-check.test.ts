import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { TenantVolume, type VolumeProbe, volumeUnsupported } from '../../src/tenants/tenant-volume.js';
import { tempDir } from '../helpers/plugin-tree.js';

const able: VolumeProbe = { uid: 0, loopControl: true, missingTools: [] };
const logger = pino({ level: 'silent' });

// quotas.filesystem_bytes needs a root host with loop devices and e2fsprogs: otherwise the quota is refused,
// naming the tenant and the field, never accepted unenforced. The tests run as root, so the probe is given.
describe('tenant filesystem_bytes: the host check', () => {
  it('says why a host cannot enforce it', () => {
    expect(volumeUnsupported(able)).toBeUndefined();
    expect(volumeUnsupported({ ...able, uid: 1000 })).toMatch(/uid 1000, not root/);
    expect(volumeUnsupported({ ...able, loopControl: false })).toMatch(/no loop devices/);
    expect(volumeUnsupported({ ...able, missingTools: ['mkfs.ext4'] })).toMatch(/mkfs\.ext4 not found/);
  });

  it('refuses the quota on a host that is not root, naming the tenant and the field, and makes nothing', async () => {
    const dataDir = tempDir('reed-tenant-fs-check-');
    const error = await TenantVolume.open('acme', dataDir, 4 * 1024 * 1024, logger, () => ({
      ...able,
      uid: 1000,
    })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      code: 'tenant_invalid',
      details: { field: 'quotas.filesystem_bytes', tenant: 'acme' },
    });
    expect((error as Error).message).toMatch(/tenant "acme": `quotas\.filesystem_bytes` cannot be enforced/);
    expect(existsSync(join(dataDir, 'files.img'))).toBe(false);
    expect(existsSync(join(dataDir, 'files'))).toBe(false);
  });

  it('a tenant without the quota and without an image needs nothing of the host', async () => {
    const dataDir = tempDir('reed-tenant-fs-check-');
    const volume = await TenantVolume.open('acme', dataDir, undefined, logger, () => {
      throw new Error('not asked');
    });
    expect(volume).toBeUndefined();
  });

  it('never follows a link at the image or at files/', async () => {
    const target = tempDir('reed-tenant-fs-target-');
    writeFileSync(join(target, 'img'), 'not an image');
    const linkedImage = tempDir('reed-tenant-fs-check-');
    symlinkSync(join(target, 'img'), join(linkedImage, 'files.img'));
    await expect(
      TenantVolume.open('acme', linkedImage, 4 * 1024 * 1024, logger, () => able),
    ).rejects.toMatchObject({
      code: 'tenant_invalid',
      message: expect.stringMatching(/not a regular file .*a link is never followed/),
    });
    const linkedFiles = tempDir('reed-tenant-fs-check-');
    mkdirSync(join(target, 'files'));
    symlinkSync(join(target, 'files'), join(linkedFiles, 'files'));
    await expect(
      TenantVolume.open('acme', linkedFiles, 4 * 1024 * 1024, logger, () => able),
    ).rejects.toMatchObject({
      code: 'tenant_invalid',
      message: expect.stringMatching(/is not a directory \(a link or a file is never followed\)/),
    });
    // Nothing made: no image beside the link.
    expect(existsSync(join(linkedFiles, 'files.img'))).toBe(false);
  });
});
