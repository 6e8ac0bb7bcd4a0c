// reed-plugins install, remove, reload and status, talking to a running serve (the built CLI: npm run build).
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServeProcess, startServe } from '../helpers/api.js';
import { runCli } from '../helpers/cli.js';
import { helloToml, pluginDir } from '../helpers/lifecycle.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { tarDir } from '../helpers/tar.js';

describe('the lifecycle commands against a running serve', () => {
  let server: ServeProcess;
  let socket: string;
  beforeAll(async () => {
    const dir = lastingDir('reed-cli-life-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n',
    );
    const plugins = join(dir, 'plugins');
    pluginDir(plugins, 'hello', helloToml('1.0.0', 'Hello'));
    server = await startServe(dir, ['--plugin-dir', plugins, '--mode', 'none']);
    socket = server.socket;
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  it('status: a table, or the API\u2019s JSON', () => {
    const plain = runCli(['status', '--socket', socket]);
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/^ID\s+VERSION\s+MODE\s+STATE\s+CRASHES\s+ERROR\n/);
    expect(plain.stdout).toMatch(/example\.hello\s+1\.0\.0\s+none\s+ready\s+0/);
    const json = runCli(['status', 'example.hello', '--socket', socket, '--json']);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: true,
      plugin: { id: 'example.hello', version: '1.0.0' },
    });
  });

  it('install DIR (the id from its manifest), then a tar file with --json', async () => {
    const v2 = pluginDir(lastingDir('reed-cli-v2-'), 'hello', helloToml('2.0.0', 'Howdy'));
    const dir = runCli(['install', v2, '--socket', socket]);
    expect(dir).toMatchObject({ status: 0, stdout: 'installed example.hello 2.0.0 ready (none)\n' });
    const file = join(lastingDir('reed-cli-tar-'), 'hello-3.tar');
    writeFileSync(
      file,
      await tarDir(pluginDir(lastingDir('reed-cli-v3-'), 'hello', helloToml('3.0.0', 'Hey'))),
    );
    const tar = runCli(['install', file, '--socket', socket, '--json']);
    expect(tar.status).toBe(0);
    expect(JSON.parse(tar.stdout)).toMatchObject({ ok: true, plugin: { version: '3.0.0', state: 'ready' } });
  });

  it('a refusal is exit 1 with its code (a directory holding a symlink: sent as a link, refused by serve)', () => {
    const bad = pluginDir(lastingDir('reed-cli-bad-'), 'hello', helloToml('4.0.0', 'Bad'));
    symlinkSync('/etc/passwd', join(bad, 'passwd'));
    const refused = runCli(['install', bad, '--socket', socket]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^error install_archive_invalid: .*symlink/);
    const json = runCli(['install', bad, '--socket', socket, '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      error: { code: 'install_archive_invalid', details: { reason: 'link' } },
    });
  });

  it('reload, then remove; an unknown id is exit 1; no serve there is exit 1 (api_unreachable); usage is exit 2', () => {
    expect(runCli(['reload', 'example.hello', '--socket', socket])).toMatchObject({
      status: 0,
      stdout: 'reloaded example.hello 3.0.0 ready (none)\n',
    });
    expect(runCli(['remove', 'example.hello', '--socket', socket])).toMatchObject({
      status: 0,
      stdout: 'removed example.hello\n',
    });
    const unknown = runCli(['status', 'example.hello', '--socket', socket]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^error plugin_not_loaded:/);
    const nobody = join(lastingDir('reed-cli-none-'), 'none.sock');
    const unreachable = runCli(['status', '--socket', nobody]);
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr).toMatch(/^error api_unreachable:/);
    expect(runCli(['install', '/nonexistent-dir']).status).toBe(2);
    expect(runCli(['remove', '--socket', socket]).status).toBe(2);
  });
});
