// The lifecycle routes of `reed-plugins serve` (docs/API.md, "Admin"), against the built CLI (npm run build):
// install over HTTP under 64 concurrent callers, a hostile archive, a failed upgrade, reload, status, removal.
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { helloToml, pluginDir } from '../helpers/lifecycle.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { tarDir, tarOf } from '../helpers/tar.js';

const TAR = { 'Content-Type': 'application/x-tar' };
const dependant = `[metadata]\nid = "test.dependant"\nname = "Dependant"\nversion = "1.0.0"\napi_version = "1.0.0"\n[[requirements.dependencies]]\nid = "example.hello"\nversion = ">=1.0.0 <4.0.0"\n[configuration]\ngreeting = "Hi"\n`;

/** example.hello at `version` in a directory that outlives the test (a serve reads it). */
function helloAt(version: string, greeting: string, from?: string): string {
  return pluginDir(lastingDir('reed-admin-'), 'hello', helloToml(version, greeting), from);
}

describe('reed-plugins serve: the admin routes (mode none)', () => {
  let server: ServeProcess;
  beforeAll(async () => {
    const dir = lastingDir('reed-serve-admin-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n[lifecycle]\nprobation_ms = 0\n',
    );
    const plugins = lastingDir('reed-admin-plugins-');
    pluginDir(plugins, 'hello', helloToml('1.0.0', 'Hello'));
    pluginDir(plugins, 'dependant', dependant);
    server = await startServe(dir, [
      '--plugin-dir',
      plugins,
      '--mode',
      'none',
      '--max-install-bytes',
      '20000',
    ]);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  const greeting = async () => {
    const { status, body } = await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greeting', '');
    return status === 200 ? (body.output as string) : `!${status} ${body.error?.code}`;
  };

  it('PUT installs v2 under 64 concurrent callers: every call answered 200, each switching once to v2', async () => {
    let stop = false;
    const answers: string[][] = Array.from({ length: 64 }, () => []);
    const callers = answers.map(async (mine) => {
      while (!stop) mine.push(await greeting());
    });
    while (answers.some((a) => a.length < 3)) await new Promise((r) => setTimeout(r, 10));
    const put = await api(
      server.socket,
      'PUT',
      '/v1/admin/plugins/example.hello',
      await tarDir(helloAt('2.0.0', 'Howdy')),
      TAR,
    );
    const seen = answers.map((a) => a.length);
    while (answers.some((a, i) => a.length < (seen[i] as number) + 3))
      await new Promise((r) => setTimeout(r, 10));
    stop = true;
    await Promise.all(callers);
    expect(put).toMatchObject({
      status: 200,
      body: { ok: true, plugin: { id: 'example.hello', version: '2.0.0', state: 'ready' } },
    });
    for (const mine of answers) {
      const at = mine.indexOf('"Howdy"');
      expect(at).toBeGreaterThan(0);
      expect(mine.slice(0, at).every((a) => a === '"Hello"')).toBe(true);
      expect(mine.slice(at).every((a) => a === '"Howdy"')).toBe(true);
    }
  });

  it('GET /v1/plugins/{id}: version, mode, state, crashes, history', async () => {
    const { status, body } = await api(server.socket, 'GET', '/v1/plugins/example.hello');
    expect(status).toBe(200);
    expect(body.plugin).toMatchObject({
      id: 'example.hello',
      version: '2.0.0',
      mode: 'none',
      state: 'ready',
      crashes: 0,
      history: [{ action: 'upgraded', version: '2.0.0', fromVersion: '1.0.0' }],
    });
    expect(await api(server.socket, 'GET', '/v1/plugins/no.such')).toMatchObject({
      status: 404,
      body: { error: { code: 'plugin_not_loaded' } },
    });
  });

  it('refuses a hostile archive (400), another content type (415), a body over the limit (413), and keeps v2', async () => {
    const hostile = await tarOf([
      { name: 'plugin.toml', content: helloToml('3.0.0', 'Evil') },
      { name: 'lib', type: 'symlink', linkname: '/etc' },
    ]);
    expect(await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', hostile, TAR)).toMatchObject({
      status: 400,
      body: { error: { code: 'install_archive_invalid', details: { reason: 'link' } } },
    });
    const other = await tarDir(helloAt('3.0.0', 'Other'));
    expect(await api(server.socket, 'PUT', '/v1/admin/plugins/example.other', other, TAR)).toMatchObject({
      status: 400,
      body: { error: { code: 'install_id_mismatch' } },
    });
    expect(
      await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', other, {
        'Content-Type': 'application/json',
      }),
    ).toMatchObject({ status: 415, body: { error: { code: 'api_unsupported_media_type' } } });
    const big = await tarOf([
      { name: 'plugin.toml', content: helloToml('3.0.0', 'Big') },
      { name: 'big', content: Buffer.alloc(25_000) },
    ]);
    expect(await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', big, TAR)).toMatchObject({
      status: 413,
      body: { error: { code: 'request_too_large' } },
    });
    expect(await greeting()).toBe('"Howdy"');
  });

  it('a v3 that fails init: 422 with its code, v2 keeps serving, the status history says so', async () => {
    const v3 = await tarDir(helloAt('3.0.0', 'Broken', join(REPO, 'test/fixtures/hostile/init-error')));
    const { status, body } = await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', v3, TAR);
    expect(status).toBe(422);
    expect(body.error).toMatchObject({
      code: 'init_failed',
      details: { version: '3.0.0', servingVersion: '2.0.0' },
    });
    expect(await greeting()).toBe('"Howdy"');
    const plugin = (await api(server.socket, 'GET', '/v1/plugins/example.hello')).body.plugin;
    expect(plugin?.history?.at(-1)).toMatchObject({
      action: 'upgrade_failed',
      version: '3.0.0',
      error: { code: 'init_failed' },
    });
  });

  it('a version outside a loaded dependant\u2019s range is refused (409 dependant_version_mismatch)', async () => {
    const v4 = await tarDir(helloAt('4.0.0', 'Four'));
    expect(await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', v4, TAR)).toMatchObject({
      status: 409,
      body: { error: { code: 'dependant_version_mismatch', details: { dependant: 'test.dependant' } } },
    });
    expect(await greeting()).toBe('"Howdy"');
  });

  it('POST reload: the same version again from its directory, serving throughout', async () => {
    const { status, body } = await api(server.socket, 'POST', '/v1/admin/plugins/example.hello/reload');
    expect(status).toBe(200);
    expect(body.plugin).toMatchObject({ version: '2.0.0', state: 'ready' });
    expect(body.plugin?.history?.at(-1)).toMatchObject({
      action: 'upgraded',
      version: '2.0.0',
      fromVersion: '2.0.0',
    });
    expect(await greeting()).toBe('"Howdy"');
  });

  it('PUT of a new id installs it; DELETE refuses while a dependant is loaded (409), removes both with dependants=true', async () => {
    const fresh = pluginDir(lastingDir('reed-admin-'), 'fresh', helloToml('1.0.0', 'Fresh', 'example.fresh'));
    expect(
      await api(server.socket, 'PUT', '/v1/admin/plugins/example.fresh', await tarDir(fresh), TAR),
    ).toMatchObject({
      status: 200,
      body: { plugin: { id: 'example.fresh', version: '1.0.0', state: 'ready' } },
    });
    expect(
      (await api(server.socket, 'POST', '/v1/plugins/example.fresh/call/greeting', '')).body.output,
    ).toBe('"Fresh"');
    expect(await api(server.socket, 'DELETE', '/v1/admin/plugins/example.hello')).toMatchObject({
      status: 409,
      body: { error: { code: 'plugin_has_dependants', details: { dependants: ['test.dependant'] } } },
    });
    expect(
      await api(server.socket, 'DELETE', '/v1/admin/plugins/example.hello?dependants=true'),
    ).toMatchObject({
      status: 200,
      body: { ok: true, removed: ['test.dependant', 'example.hello'] },
    });
    expect(await api(server.socket, 'GET', '/v1/plugins/example.hello')).toMatchObject({ status: 404 });
    expect(await api(server.socket, 'DELETE', '/v1/admin/plugins/example.fresh?all=1')).toMatchObject({
      status: 400,
      body: { error: { code: 'api_bad_request' } },
    });
  });

  it('another method on an admin route: 405 with Allow', async () => {
    const { status, allow } = await new Promise<{ status: number; allow: string | undefined }>(
      (resolve, reject) => {
        const req = request(
          { socketPath: server.socket, method: 'GET', path: '/v1/admin/plugins/example.fresh' },
          (res) => {
            res.resume();
            resolve({ status: res.statusCode ?? 0, allow: res.headers.allow });
          },
        );
        req.on('error', reject);
        req.end();
      },
    );
    expect(status).toBe(405);
    expect(allow).toBe('PUT, DELETE');
  });
});
