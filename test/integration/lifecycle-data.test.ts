// Upgrades keep a plugin's data (issue 13, point 7): its storage (keyed by its id) and its files directory
// (<data_dir>/files/<id>/, permissions.filesystem) survive an install of a new version, a reload and a removal.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startHost, text } from '../helpers/host.js';
import { EXAMPLES, pluginDir } from '../helpers/lifecycle.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { stream, tarDir } from '../helpers/tar.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** example.notes-c at `version`, with a files directory of its own. */
const notes = (version: string) =>
  readFileSync(join(EXAMPLES, 'notes-c/plugin.toml'), 'utf8')
    .replace('version = "0.1.0"', `version = "${version}"`)
    .replace('[permissions]\n', '[permissions]\nfilesystem = "readwrite"\n');

describe('upgrades keep the plugin\u2019s data', () => {
  it('storage and <data_dir>/files/<id>/ survive an install, a reload and a removal', async () => {
    const root = tempDir('reed-data-');
    pluginDir(root, 'notes', notes('0.1.0'), join(EXAMPLES, 'notes-c'));
    const { host, dir } = await startHost([root], {
      mode: 'none',
      plugins: ['example.notes-c'],
      reedToml: '[policy.permissions]\nfilesystem = "readwrite"\n',
    });
    cleanups.push(() => host.close());
    const files = join(dir, 'data/files/example.notes-c');
    expect(existsSync(files)).toBe(true);
    writeFileSync(join(files, 'marker'), 'kept');
    await host.call('example.notes-c', 'put', 'greeting=hello');
    const get = async () => text((await host.call('example.notes-c', 'get', 'greeting')).output);

    const v2 = pluginDir(tempDir('reed-data-v2-'), 'notes', notes('0.2.0'), join(EXAMPLES, 'notes-c'));
    expect(await host.install('example.notes-c', stream(await tarDir(v2)))).toMatchObject({
      version: '0.2.0',
    });
    expect(await get()).toBe('hello');
    expect(readFileSync(join(files, 'marker'), 'utf8')).toBe('kept');

    await host.reload('example.notes-c');
    expect(await get()).toBe('hello');

    expect(await host.remove('example.notes-c')).toEqual(['example.notes-c']);
    expect(readFileSync(join(files, 'marker'), 'utf8')).toBe('kept');
    const v3 = pluginDir(tempDir('reed-data-v3-'), 'notes', notes('0.3.0'), join(EXAMPLES, 'notes-c'));
    expect(await host.install('example.notes-c', stream(await tarDir(v3)))).toMatchObject({
      version: '0.3.0',
    });
    expect(await get()).toBe('hello');
    expect(readFileSync(join(files, 'marker'), 'utf8')).toBe('kept');
  });
});
