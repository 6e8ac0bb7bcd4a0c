// reed-plugins serve --watch (issue 13, point 5): an edit of a plugin's directory reloads it; a broken edit keeps
// the version that serves and the log says why. The built CLI (npm run build).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { helloToml, pluginDir } from '../helpers/lifecycle.js';
import { lastingDir } from '../helpers/plugin-tree.js';

describe('serve --watch', () => {
  let server: ServeProcess;
  let plugin: string;
  beforeAll(async () => {
    const dir = lastingDir('reed-watch-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n',
    );
    plugin = pluginDir(join(dir, 'plugins'), 'hello', helloToml('1.0.0', 'Hello'));
    server = await startServe(dir, ['--plugin-dir', join(dir, 'plugins'), '--mode', 'none', '--watch']);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  const version = async () =>
    (await api(server.socket, 'GET', '/v1/plugins/example.hello')).body.plugin?.version;
  const greeting = async () =>
    (await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greeting', '')).body.output;
  const until = async (done: () => Promise<boolean> | boolean, what: string) => {
    for (let i = 0; i < 1500; i++) {
      if (await done()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  it('an edit reloads the plugin: the new version serves', async () => {
    expect(await version()).toBe('1.0.0');
    writeFileSync(join(plugin, 'plugin.toml'), helloToml('2.0.0', 'Howdy'));
    await until(async () => (await version()) === '2.0.0', 'the reload');
    expect(await greeting()).toBe('"Howdy"');
  });

  it('a broken edit keeps the version that serves, and the log says why; the next good edit loads', async () => {
    writeFileSync(join(plugin, 'plugin.toml'), '[metadata\nid = "example.hello"\n');
    await until(() => /watch: reload failed/.test(server.stderr()), 'the failed reload in the log');
    const line = server
      .stderr()
      .split('\n')
      .find((l) => l.includes('watch: reload failed'));
    expect(JSON.parse(line as string)).toMatchObject({ pluginId: 'example.hello', code: 'manifest_syntax' });
    expect(await version()).toBe('2.0.0');
    expect(await greeting()).toBe('"Howdy"');
    writeFileSync(join(plugin, 'plugin.toml'), helloToml('3.0.0', 'Hey'));
    await until(async () => (await version()) === '3.0.0', 'the reload after the fix');
    expect(await greeting()).toBe('"Hey"');
  });
});
