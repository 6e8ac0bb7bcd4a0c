// A tenant removed without purge keeps its data aside: a tenant created later with the same id starts empty
// (each runtime tenant's data directory is named by a generation in its tenant.json), and the data of a tenant.json
// of before generations (`data`) is used as before, and kept aside the same way when it is removed.
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
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
});
