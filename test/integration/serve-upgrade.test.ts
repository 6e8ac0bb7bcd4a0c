// Issue 13's first acceptance point through the API, in process and container modes (mode none: serve-admin):
// 64 concurrent HTTP callers on a plugin while PUT /v1/admin/plugins/{id} upgrades it v1 -> v2. Every request gets
// an answer, all 200, each caller's outputs switch from v1 to v2 once, and the old sandbox is gone afterwards (its
// runner directory, its container). Runs the built CLI (npm run build).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { api, type ServeProcess, startServe } from '../helpers/api.js';
import { helloToml, pluginDir } from '../helpers/lifecycle.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { tarDir } from '../helpers/tar.js';

const servers: ServeProcess[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.child.kill('SIGTERM');
    await s.exited;
  }
});

/** The sandboxes of example.hello that exist for this serve: runner directories, or containers by their mounts. */
async function sandboxes(mode: string, dir: string): Promise<string[]> {
  if (mode === 'process') {
    const root = join(dir, 'runtime/sandboxes');
    return (existsSync(root) ? readdirSync(root) : []).filter((d) => {
      const owner = join(root, d, 'owner.json');
      return existsSync(owner) && JSON.parse(readFileSync(owner, 'utf8')).pluginId === 'example.hello';
    });
  }
  const docker = new Docker();
  const found = await docker.listContainers({
    all: true,
    filters: { label: ['reed.plugin.id=example.hello'] },
  });
  return found
    .filter((c) => c.Mounts.some((m) => m.Source.startsWith(dir)))
    .map((c) => c.Labels['reed.plugin.version'] as string);
}

describe.each(['process', 'container'])('PUT under 64 concurrent HTTP callers (mode %s)', (mode) => {
  it('every call answered 200, each switching once from v1 to v2; the old sandbox is gone', async () => {
    const dir = lastingDir('reed-serve-upgrade-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n[lifecycle]\nprobation_ms = 0\n',
    );
    pluginDir(join(dir, 'plugins'), 'hello', helloToml('1.0.0', 'Hello'));
    const server = await startServe(dir, ['--plugin-dir', join(dir, 'plugins'), '--mode', mode]);
    servers.push(server);
    expect(await sandboxes(mode, dir)).toHaveLength(1);
    const call = async () => {
      const { status, body } = await api(
        server.socket,
        'POST',
        '/v1/plugins/example.hello/call/greeting',
        '',
      );
      return status === 200 ? (body.output as string) : `!${status} ${body.error?.code}`;
    };
    let stop = false;
    const answers: string[][] = Array.from({ length: 64 }, () => []);
    const callers = answers.map(async (mine) => {
      while (!stop) mine.push(await call());
    });
    while (answers.some((a) => a.length < 3)) await new Promise((r) => setTimeout(r, 10));
    const v2 = await tarDir(
      pluginDir(lastingDir('reed-serve-upgrade-v2-'), 'hello', helloToml('2.0.0', 'Howdy')),
    );
    const put = await api(server.socket, 'PUT', '/v1/admin/plugins/example.hello', v2, {
      'Content-Type': 'application/x-tar',
    });
    const seen = answers.map((a) => a.length);
    while (answers.some((a, i) => a.length < (seen[i] as number) + 3))
      await new Promise((r) => setTimeout(r, 10));
    stop = true;
    await Promise.all(callers);
    expect(put).toMatchObject({ status: 200, body: { plugin: { version: '2.0.0', state: 'ready', mode } } });
    for (const mine of answers) {
      const at = mine.indexOf('"Howdy"');
      expect(at).toBeGreaterThan(0);
      expect(mine.slice(0, at).every((a) => a === '"Hello"')).toBe(true);
      expect(mine.slice(at).every((a) => a === '"Howdy"')).toBe(true);
    }
    const left = await sandboxes(mode, dir);
    expect(left).toHaveLength(1);
    if (mode === 'container') expect(left).toEqual(['2.0.0']);
  });
});
