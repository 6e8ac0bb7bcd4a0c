import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { type Fixture, startRegistry } from '../helpers/tenants.js';

const WASM = join(REPO, 'test/fixtures/data-dir/files/plugin.wasm');
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// A tenant's plugin with a data directory, under <data_dir>/tenants/<id>/data-<generation>/files/<plugin id>/. In process mode on
// a root host, bubblewrap reaches it as the runner's uid: every directory above it must be passable. Runners start
// from dist/: `npm run build` first.
describe.each(['none', 'process'] as const)('tenants, data directories, mode %s', (mode) => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    fixture = undefined;
  });

  it('a tenant\u2019s plugin writes its own data directory, apart from another tenant\u2019s of the same id', async () => {
    fixture = await startRegistry(mode, '[policy.permissions]\nfilesystem = "readwrite"\n');
    const made = [] as { call: (fn: string, input: string) => Promise<string> }[];
    for (const id of ['fs-one', 'fs-two']) {
      const root = tempDir();
      writePlugin(
        root,
        'fs.a',
        { id: 'fs.a', permissions: { filesystem: 'readwrite' } },
        { 'plugin.wasm': readFileSync(WASM) },
      );
      const tenant = await fixture.registry.create(id, { plugin_dirs: [root] });
      expect(tenant.status().map((s) => [s.id, s.state, s.error?.message])).toEqual([
        ['fs.a', 'ready', undefined],
      ]);
      made.push({ call: async (fn, input) => text((await tenant.call('fs.a', fn, input)).output) });
    }
    const [one, two] = made;
    await one?.call('put', 'notes.txt\nfrom one');
    await two?.call('put', 'notes.txt\nfrom two');
    expect(await one?.call('get', 'notes.txt')).toBe('from one');
    expect(await two?.call('get', 'notes.txt')).toBe('from two');
    // Each runtime tenant's own generation's data directory: data/tenants/<id>/data-<generation>.
    const file = (id: string) => join(fixture?.registry.dataDirOf(id) ?? '', 'files/fs.a/notes.txt');
    expect(file('fs-one')).toMatch(/\/data\/tenants\/fs-one\/data-[0-9a-f]{16}\//);
    expect(readFileSync(file('fs-one'), 'utf8')).toBe('from one');
    expect(readFileSync(file('fs-two'), 'utf8')).toBe('from two');
    expect(existsSync(join(fixture.dir, 'data/files/fs.a'))).toBe(false);
  }, 120_000);
});
