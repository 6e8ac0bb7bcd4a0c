// Disk bytes per tenant (src/server/tenant-disk.ts): each tenant's plugins' data directories walked at scrape,
// no link followed, each inode once, at most once per interval, and no more entries per scrape than the cap.
import { linkSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleMap as samples } from '../../src/cli/prom-text.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { ReedMetrics } from '../../src/server/metrics.js';
import { startHost } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function twoTenants(): Promise<{ acme: PluginHost; beta: PluginHost }> {
  const acme = (await startHost([], { mode: 'none' })).host;
  cleanups.push(() => acme.close());
  const beta = (await startHost([], { mode: 'none' })).host;
  cleanups.push(() => beta.close());
  return { acme, beta };
}

/** The own sizes of these directories under `root` (the walk counts a directory's size with the files'). */
const own = (root: string, ...dirs: string[]) => dirs.reduce((n, d) => n + statSync(join(root, d)).size, 0);

/** What a plugin could leave in its directory: files, a hard link, links out of it to much larger files. */
function fill(host: PluginHost): void {
  const files = join(host.config.dataDir, 'files');
  const outside = tempDir('reed-disk-outside-');
  writeFileSync(join(outside, 'big'), Buffer.alloc(1 << 20));
  mkdirSync(join(outside, 'tree'));
  writeFileSync(join(outside, 'tree', 'big'), Buffer.alloc(1 << 20));
  mkdirSync(join(files, 'p1', 'sub'), { recursive: true });
  writeFileSync(join(files, 'p1', 'a'), Buffer.alloc(1000));
  writeFileSync(join(files, 'p1', 'sub', 'b'), Buffer.alloc(234));
  linkSync(join(files, 'p1', 'a'), join(files, 'p1', 'a-again'));
  symlinkSync(join(outside, 'big'), join(files, 'p1', 'to-big'));
  // A plugin's whole directory replaced by a link to a tree elsewhere.
  symlinkSync(join(outside, 'tree'), join(files, 'p2'));
}

describe('reed_tenant_disk_bytes', () => {
  it("counts each tenant's files once, follows no link, and reads nothing for a tenant without files", async () => {
    const { acme, beta } = await twoTenants();
    fill(acme);
    const metrics = new ReedMetrics({
      targets: () => [
        { tenant: 'acme', host: acme },
        { tenant: 'beta', host: beta },
      ],
    });
    cleanups.push(() => metrics.close());
    const s = samples(await metrics.text());
    const acmeDirs = own(join(acme.config.dataDir, 'files'), '.', 'p1', 'p1/sub');
    expect(s.get('reed_tenant_disk_bytes{tenant="acme"}')).toBe(1234 + acmeDirs);
    // p1, a, sub, b, a-again, to-big, p2
    expect(s.get('reed_tenant_disk_entries{tenant="acme"}')).toBe(7);
    expect(s.get('reed_tenant_disk_capped{tenant="acme"}')).toBe(0);
    expect(s.get('reed_tenant_disk_bytes{tenant="beta"}')).toBe(0);
  });

  it('walks a tenant again only after the interval; a scrape past its entries marks the tenant capped, and the next scrape measures the tenants left first', async () => {
    const { acme, beta } = await twoTenants();
    fill(acme);
    writeFileSync(join(beta.config.dataDir, 'files-not'), 'x');
    mkdirSync(join(beta.config.dataDir, 'files', 'q'), { recursive: true });
    writeFileSync(join(beta.config.dataDir, 'files', 'q', 'c'), Buffer.alloc(50));
    let clock = 0;
    const metrics = new ReedMetrics({
      targets: () => [
        { tenant: 'acme', host: acme },
        { tenant: 'beta', host: beta },
      ],
      disk: { everyMs: 1000, entriesPerScrape: 5, now: () => clock },
    });
    cleanups.push(() => metrics.close());
    // acme's 7 entries pass the 5 a scrape may read: no figure for it, and nothing left for beta.
    let s = samples(await metrics.text());
    expect(s.get('reed_tenant_disk_capped{tenant="acme"}')).toBe(1);
    expect(s.has('reed_tenant_disk_bytes{tenant="acme"}')).toBe(false);
    expect(s.has('reed_tenant_disk_bytes{tenant="beta"}')).toBe(false);
    // Within the interval nothing is walked again, even beta, which was never measured... until the next scrape
    // that has entries left: beta has no figure, so it goes first.
    s = samples(await metrics.text());
    const betaDirs = own(join(beta.config.dataDir, 'files'), '.', 'q');
    expect(s.get('reed_tenant_disk_bytes{tenant="beta"}')).toBe(50 + betaDirs);
    expect(s.get('reed_tenant_disk_entries{tenant="beta"}')).toBe(2);
    // A new file in beta is not seen before the interval has passed.
    writeFileSync(join(beta.config.dataDir, 'files', 'q', 'd'), Buffer.alloc(25));
    s = samples(await metrics.text());
    expect(s.get('reed_tenant_disk_bytes{tenant="beta"}')).toBe(50 + betaDirs);
    clock += 1000;
    s = samples(await metrics.text());
    expect(s.get('reed_tenant_disk_bytes{tenant="beta"}')).toBe(75 + betaDirs);
    // With room for acme's entries, it gets its figure.
    const roomy = new ReedMetrics({
      targets: () => [{ tenant: 'acme', host: acme }],
      disk: { entriesPerScrape: 7 },
    });
    cleanups.push(() => roomy.close());
    s = samples(await roomy.text());
    expect(s.get('reed_tenant_disk_bytes{tenant="acme"}')).toBe(
      1234 + own(join(acme.config.dataDir, 'files'), '.', 'p1', 'p1/sub'),
    );
    expect(s.get('reed_tenant_disk_capped{tenant="acme"}')).toBe(0);
  });
});
