// Installed plugins persist (issue 13, point 3): what was installed through the API survives a restart of a real
// `reed-plugins serve` child, and a serve killed with SIGKILL in the middle of an install comes back with the old
// version or the new one, loads it, and leaves nothing over (no staging directory, no version directory nothing
// points to). Runs the built CLI (npm run build).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { helloToml, pluginDir } from '../helpers/lifecycle.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { tarDir, tarOf } from '../helpers/tar.js';

const TAR = { 'Content-Type': 'application/x-tar' };
const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.child.kill('SIGKILL');
    await s.exited;
  }
});

/** A serve directory (reed.toml, plugin_dirs holding example.hello 1.0.0) that outlives restarts. */
function serveDir(mode: string, toml = ''): { dir: string; args: string[] } {
  const dir = lastingDir('reed-persist-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n[signatures]\nrequire = "none"\n${toml}`,
  );
  const plugins = join(dir, 'plugins');
  pluginDir(plugins, 'hello', helloToml('1.0.0', 'Hello'));
  return { dir, args: ['--plugin-dir', plugins, '--mode', mode] };
}

async function serve(dir: string, args: string[]): Promise<ServeProcess> {
  const s = await startServe(dir, args);
  servers.push(s);
  return s;
}

async function kill(s: ServeProcess): Promise<void> {
  s.child.kill('SIGKILL');
  await s.exited;
  servers.splice(servers.indexOf(s), 1);
}

async function stop(s: ServeProcess): Promise<void> {
  s.child.kill('SIGTERM');
  expect(await s.exited).toBe(0);
  servers.splice(servers.indexOf(s), 1);
}

const archive = async (version: string, greeting: string, from?: string) =>
  tarDir(pluginDir(lastingDir('reed-persist-v-'), 'hello', helloToml(version, greeting), from));

const greeting = async (s: ServeProcess) =>
  (await api(s.socket, 'POST', '/v1/plugins/example.hello/call/greeting', '')).body.output;

/** What the store holds: staging entries, version directories per id, the pointer, stray pointer files. */
function store(dir: string) {
  const root = join(dir, 'data/plugins');
  const ls = (p: string) => (existsSync(p) ? readdirSync(p).sort() : []);
  const pointer = existsSync(join(root, 'installed.json'))
    ? (JSON.parse(readFileSync(join(root, 'installed.json'), 'utf8')).plugins as Record<
        string,
        { dir: string }
      >)
    : {};
  return {
    staging: ls(join(root, 'staging')),
    versions: Object.fromEntries(
      ls(join(root, 'versions')).map((id) => [id, ls(join(root, 'versions', id))]),
    ),
    pointer: Object.fromEntries(Object.entries(pointer).map(([id, p]) => [id, p.dir.split('/')[2]])),
    strays: ls(root).filter((n) => n.endsWith('.tmp')),
  };
}

/** Nothing over: no staging, no stray pointer, and each id's only version directory is the one pointed at. */
function expectNothingLeft(dir: string): void {
  const s = store(dir);
  expect(s.staging).toEqual([]);
  expect(s.strays).toEqual([]);
  for (const [id, dirs] of Object.entries(s.versions))
    expect(dirs).toEqual(s.pointer[id] === undefined ? [] : [s.pointer[id]]);
}

const until = async (done: () => boolean, what: string) => {
  for (let i = 0; i < 3000 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!done()) throw new Error(`timed out waiting for ${what}`);
};

describe('installed plugins persist across restarts of serve', () => {
  it('an install, and a removal, survive a restart', async () => {
    const { dir, args } = serveDir('none');
    let s = await serve(dir, args);
    expect(
      (await api(s.socket, 'PUT', '/v1/admin/plugins/example.hello', await archive('2.0.0', 'Howdy'), TAR))
        .status,
    ).toBe(200);
    const fresh = await tarDir(
      pluginDir(lastingDir('reed-persist-v-'), 'fresh', helloToml('1.0.0', 'Fresh', 'example.fresh')),
    );
    expect((await api(s.socket, 'PUT', '/v1/admin/plugins/example.fresh', fresh, TAR)).status).toBe(200);
    await stop(s);
    s = await serve(dir, args);
    // The installed version wins over the copy in plugin_dirs.
    expect((await api(s.socket, 'GET', '/v1/plugins/example.hello')).body.plugin).toMatchObject({
      version: '2.0.0',
      state: 'ready',
    });
    expect(await greeting(s)).toBe('"Howdy"');
    expect((await api(s.socket, 'GET', '/v1/plugins/example.fresh')).body.plugin).toMatchObject({
      version: '1.0.0',
      state: 'ready',
    });
    expectNothingLeft(dir);
    expect(await api(s.socket, 'DELETE', '/v1/admin/plugins/example.fresh')).toMatchObject({ status: 200 });
    await stop(s);
    s = await serve(dir, args);
    expect(await api(s.socket, 'GET', '/v1/plugins/example.fresh')).toMatchObject({ status: 404 });
    expect(store(dir).versions['example.fresh']).toEqual([]);
    expect(store(dir).pointer).not.toHaveProperty('example.fresh');
    expectNothingLeft(dir);
  });

  it('SIGKILL in the middle of the upload: the old version after restart, nothing left', async () => {
    const { dir, args } = serveDir('none');
    const s = await serve(dir, args);
    const body = await tarOf([
      { name: 'plugin.toml', content: helloToml('2.0.0', 'Howdy') },
      { name: 'padding.bin', content: Buffer.alloc(200_000) },
      { name: 'plugin.wasm', content: readFileSync(join(REPO, 'examples/plugins/hello/plugin.wasm')) },
    ]);
    const req = request({
      socketPath: s.socket,
      method: 'PUT',
      path: '/v1/admin/plugins/example.hello',
      headers: { ...TAR, 'Content-Length': String(body.length) },
    });
    const answered = new Promise<string>((resolve) => {
      req.on('response', () => resolve('answered'));
      req.on('error', () => resolve('cut off'));
    });
    req.write(body.subarray(0, 100_000));
    // The extraction has begun: the manifest is in a staging directory.
    const staging = join(dir, 'data/plugins/staging');
    await until(
      () => readdirSync(staging).some((d) => existsSync(join(staging, d, 'tree/plugin.toml'))),
      'the upload to be under way',
    );
    await kill(s);
    expect(await answered).toBe('cut off');
    const again = await serve(dir, args);
    expect((await api(again.socket, 'GET', '/v1/plugins/example.hello')).body.plugin).toMatchObject({
      version: '1.0.0',
      state: 'ready',
    });
    expect(await greeting(again)).toBe('"Hello"');
    expectNothingLeft(dir);
    expect(store(dir).versions).toEqual({});
  });

  it('SIGKILL while the new version starts (its init): the old version after restart, the new files gone', async () => {
    const { dir, args } = serveDir('process');
    const s = await serve(dir, args);
    // v1 installed too, so that both versions are in the store when the kill comes.
    expect(
      (
        await api(
          s.socket,
          'PUT',
          '/v1/admin/plugins/example.hello',
          await archive('1.5.0', 'Installed'),
          TAR,
        )
      ).status,
    ).toBe(200);
    const v2 = await archive('2.0.0', 'Slow', join(REPO, 'test/fixtures/native-process/slow-init'));
    const put = api(s.socket, 'PUT', '/v1/admin/plugins/example.hello', v2, TAR).then(
      () => 'answered',
      () => 'cut off',
    );
    // v2's directory is kept and its three-second init runs: the install is half done.
    await until(() => (store(dir).versions['example.hello'] ?? []).length === 2, 'v2 to be starting');
    await kill(s);
    expect(await put).toBe('cut off');
    const again = await serve(dir, args);
    expect((await api(again.socket, 'GET', '/v1/plugins/example.hello')).body.plugin).toMatchObject({
      version: '1.5.0',
      state: 'ready',
    });
    expect(await greeting(again)).toBe('"Installed"');
    expectNothingLeft(dir);
    expect(store(dir).versions['example.hello']).toHaveLength(1);
  });

  it('SIGKILL after the new version serves, on probation: the new version after restart, the old files gone', async () => {
    const { dir, args } = serveDir('none');
    const s = await serve(dir, args);
    expect(
      (
        await api(
          s.socket,
          'PUT',
          '/v1/admin/plugins/example.hello',
          await archive('1.5.0', 'Installed'),
          TAR,
        )
      ).status,
    ).toBe(200);
    const put = await api(
      s.socket,
      'PUT',
      '/v1/admin/plugins/example.hello',
      await archive('2.0.0', 'Howdy'),
      TAR,
    );
    expect(put.body.plugin).toMatchObject({ version: '2.0.0', probation: { previousVersion: '1.5.0' } });
    // The old version's files are kept for the probation window: both are there when the kill comes.
    expect(store(dir).versions['example.hello']).toHaveLength(2);
    await kill(s);
    const again = await serve(dir, args);
    expect((await api(again.socket, 'GET', '/v1/plugins/example.hello')).body.plugin).toMatchObject({
      version: '2.0.0',
      state: 'ready',
    });
    expect(await greeting(again)).toBe('"Howdy"');
    expectNothingLeft(dir);
    expect(store(dir).versions['example.hello']).toHaveLength(1);
  });
});

describe('an install killed at each of its steps', () => {
  // Crash consistency (issue 17, docs/RELIABILITY.md): one store, one install after another, each serve killed at a
  // later step of its install: the upload sent whole, the tree extracted, the version directory renamed into place,
  // the pointer replaced. Whatever the step (and if the install got further before the kill landed), the restart
  // runs the old version or the new one, whole, and leaves nothing over.
  it('comes back with the old version or the new one every time, and nothing left', async () => {
    const { dir, args } = serveDir('none');
    const root = join(dir, 'data/plugins');
    const pointer = () =>
      existsSync(join(root, 'installed.json')) ? readFileSync(join(root, 'installed.json'), 'utf8') : '';
    const steps: [string, (before: { versions: number; pointer: string }) => boolean][] = [
      ['the upload sent', () => true],
      [
        'the tree extracted',
        () =>
          readdirSync(join(root, 'staging')).some((d) =>
            existsSync(join(root, 'staging', d, 'tree/plugin.wasm')),
          ),
      ],
      [
        'the version directory in place',
        (b) => (store(dir).versions['example.hello'] ?? []).length > b.versions,
      ],
      ['the pointer replaced', (b) => pointer() !== b.pointer],
    ];
    const greetings: Record<string, string> = { '1.0.0': '"Hello"' };
    let current = '1.0.0';
    let s = await serve(dir, args);
    for (const [i, [step]] of steps.entries()) {
      const version = `2.${i}.0`;
      greetings[version] = `"V${i}"`;
      const before = { versions: (store(dir).versions['example.hello'] ?? []).length, pointer: pointer() };
      const body = await archive(version, `V${i}`);
      let answered = false;
      const put = api(s.socket, 'PUT', '/v1/admin/plugins/example.hello', body, TAR).then(
        () => (answered = true),
        () => false,
      );
      // The kill lands at the step, or at a later one when the install ran past it (it may have answered by then).
      await until(() => answered || steps.slice(i).some(([, later]) => later(before)), step);
      await kill(s);
      await put;
      s = await serve(dir, args);
      const plugin = (await api(s.socket, 'GET', '/v1/plugins/example.hello')).body.plugin;
      if (plugin === undefined) throw new Error(`${step}: example.hello is not loaded after the restart`);
      expect([current, version], step).toContain(plugin.version);
      expect(plugin.state, step).toBe('ready');
      expect(await greeting(s), step).toBe(greetings[plugin.version]);
      expectNothingLeft(dir);
      current = plugin.version;
    }
  });
});
