// A tenant removed without purge keeps its data aside: a tenant created later with the same id starts empty
// (each runtime tenant's data directory is named by a generation in its tenant.json), and the data of a tenant.json
// of before generations (`data`) is used as before, and kept aside the same way when it is removed.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Fixture, NOTES, notesDir, startRegistry } from '../helpers/tenants.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('tenant generations (mode none)', () => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    fixture = undefined;
  });

  it('a tenant.json of before generations keeps its `data`; removed, it is kept aside; the next tenant of that id starts empty', async () => {
    fixture = await startRegistry('none');
    const spec = { plugin_dirs: [notesDir(fixture.dir, 'old-plugins')] };
    const old = await fixture.registry.create('old', spec);
    await old.call(NOTES, 'put', 'k=from-before');
    const dir = join(fixture.dir, 'data', 'tenants', 'old');
    const record = JSON.parse(readFileSync(join(dir, 'tenant.json'), 'utf8')) as Record<string, unknown>;
    expect(record.generation).toMatch(/^[0-9a-f]{16}$/);
    expect(readdirSync(dir).sort()).toEqual([`data-${record.generation}`, 'tenant.json']);
    await fixture.registry.close();

    // What a version before generations wrote: no generation, its data in `data`.
    const { generation: _g, ...before } = record;
    writeFileSync(join(dir, 'tenant.json'), JSON.stringify(before));
    renameSync(join(dir, `data-${record.generation}`), join(dir, 'data'));
    const registry = await fixture.restart();
    const back = registry.get('old');
    expect(back === undefined ? '' : text((await back.call(NOTES, 'get', 'k')).output)).toBe('from-before');
    expect(registry.removedData()).toEqual([]);

    await registry.remove('old');
    expect(registry.removedData()).toEqual([{ tenant: 'old', generation: null, path: join(dir, 'data') }]);
    const next = await registry.create('old', spec);
    await expect(next.call(NOTES, 'get', 'k')).rejects.toMatchObject({ code: 'plugin_error' });
    // The kept data is untouched, and still listed after a restart.
    const again = await fixture.restart();
    expect(again.removedData().map((d) => d.generation)).toEqual([null]);
    await again.purgeRemoved('old');
    expect(existsSync(join(dir, 'data'))).toBe(false);
    expect(
      again
        .get('old')
        ?.status()
        .map((s) => s.state),
    ).toEqual(['ready']);
  });

  it('a runtime tenant whose store cannot be read is left out at start, and every other tenant is served', async () => {
    // The sixth review: one tenant's unreadable installed-plugin pointer stopped the whole registry (serve exited 1).
    fixture = await startRegistry('none');
    const spec = { plugin_dirs: [notesDir(fixture.dir, 'ok-plugins')] };
    await fixture.registry.create('ok', spec);
    const broken = await fixture.registry.create('broken', {
      plugin_dirs: [notesDir(fixture.dir, 'broken-plugins')],
    });
    await broken.call(NOTES, 'put', 'k=v');
    const record = JSON.parse(
      readFileSync(join(fixture.dir, 'data', 'tenants', 'broken', 'tenant.json'), 'utf8'),
    ) as { generation: string };
    const plugins = join(fixture.dir, 'data', 'tenants', 'broken', `data-${record.generation}`, 'plugins');
    mkdirSync(plugins, { recursive: true });
    writeFileSync(
      join(plugins, 'installed.json'),
      '{"example.x": {"dir": "versions/example.x/1.0.1 _1_2_0123456789abcdef"',
    );
    await fixture.registry.close();

    const registry = await fixture.restart();
    expect(registry.get('broken')).toBeUndefined();
    const ok = registry.get('ok');
    await ok?.call(NOTES, 'put', 'k=still');
    expect(text((await (ok as NonNullable<typeof ok>).call(NOTES, 'get', 'k')).output)).toBe('still');
    expect(
      fixture.logs.some((l) => l.tenant === 'broken' && l.code === 'store_unreadable' && l.level === 50),
    ).toBe(true);
  });
});
