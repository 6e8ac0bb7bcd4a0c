import { cpSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { EngineProxy } from '../helpers/engine-proxy.js';
import { startHost, text } from '../helpers/host.js';
import { lastingDir, tempDir, writePlugin } from '../helpers/plugin-tree.js';

/**
 * The Docker engine stops answering and comes back, seen through a socket in front of the real engine (so
 * the other tests keep theirs). Typed errors, quickly; plugins running meanwhile unaffected; recovery after.
 */
const CLIENT_TIMEOUT_MS = 10_000;
const DIRS = [join(REPO, 'examples/plugins'), join(REPO, 'test/fixtures/native-process')];
const TOML = '[signatures]\nrequire = "none"\n';
const FAST = { restartBaseMs: 50, restartMaxMs: 500, startTimeoutMs: 30_000 };

/** Calls until the call succeeds or `ms` pass; returns its output or the last error's code. */
async function untilItWorks(host: PluginHost, id: string, fn: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    try {
      return text((await host.call(id, fn)).output);
    } catch (error) {
      last = (error as { code?: string }).code ?? String(error);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return `still failing: ${last}`;
}

describe('a Docker engine that goes away and comes back', () => {
  let proxy: EngineProxy;
  let host: PluginHost;
  beforeAll(async () => {
    proxy = new EngineProxy(lastingDir('reed-engine-'));
    await proxy.up();
    ({ host } = await startHost(DIRS, {
      mode: 'container',
      plugins: ['example.hello', 'proc.segfault'],
      reedToml: TOML,
      supervision: FAST,
      docker: new Docker({ socketPath: proxy.path, timeout: CLIENT_TIMEOUT_MS }),
    }));
    expect(host.status().map((s) => s.state)).toEqual(['ready', 'ready']);
  }, 180_000);
  afterAll(async () => {
    await proxy.up();
    await host.close();
    await proxy.down();
  });

  it('leaves running plugins alone, fails restarts at once with docker_unavailable, and recovers', async () => {
    await proxy.down();
    // Calls do not go through the engine.
    expect(text((await host.call('example.hello', 'greet', 'still here')).output)).toBe('Hello, still here!');
    await expect(host.call('proc.segfault', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
    // The restart needs the engine: calls now fail with its code, without waiting for the client's timeout.
    const started = Date.now();
    await expect(host.call('proc.segfault', 'ok')).rejects.toMatchObject({ code: 'docker_unavailable' });
    expect(Date.now() - started).toBeLessThan(CLIENT_TIMEOUT_MS);
    // Never the plugin's fault: many failed restarts later it is not marked failed by the breaker.
    await new Promise((r) => setTimeout(r, 2_000));
    await expect(host.call('proc.segfault', 'ok')).rejects.toMatchObject({ code: 'docker_unavailable' });
    // The status says what is so: its runner is being replaced, not failed.
    expect(host.status().find((s) => s.id === 'proc.segfault')).toMatchObject({
      state: 'restarting',
      crashes: 1,
    });

    await proxy.up();
    expect(await untilItWorks(host, 'proc.segfault', 'ok', 30_000)).toBe('ok');
    expect(text((await host.call('example.hello', 'greet', 'back')).output)).toBe('Hello, back!');
    // The crashed container could not be removed while the engine was away; it is removed once it is back.
    const engine = new Docker();
    const mine = async () =>
      (
        await engine.listContainers({
          all: true,
          filters: { label: [`reed.host.session=${host.session.id}`, 'reed.plugin.id=proc.segfault'] },
        })
      ).length;
    const deadline = Date.now() + 15_000;
    while ((await mine()) > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await mine()).toBe(1);
  });

  it('an engine that accepts and never answers: loading fails with docker_unavailable; the next call loads it, dependencies first', async () => {
    // dep.user needs dep.base; both are example.hello under other ids.
    const tree = tempDir();
    const manifest = readFileSync(join(REPO, 'examples/plugins/hello/plugin.toml'), 'utf8');
    for (const [name, extra] of [
      ['base', ''],
      ['user', '\n[[requirements.dependencies]]\nid = "dep.base"\n'],
    ] as const) {
      cpSync(join(REPO, 'examples/plugins/hello'), join(tree, name), { recursive: true });
      writeFileSync(
        join(tree, name, 'plugin.toml'),
        manifest.replace('id = "example.hello"', `id = "dep.${name}"`) + extra,
      );
    }
    await proxy.hang();
    const { host: second } = await startHost([tree], {
      mode: 'container',
      reedToml: TOML,
      supervision: FAST,
      docker: new Docker({ socketPath: proxy.path, timeout: CLIENT_TIMEOUT_MS }),
    });
    try {
      const state = () => Object.fromEntries(second.status().map((s) => [s.id, s.error?.code ?? s.state]));
      expect(state()).toEqual({ 'dep.base': 'docker_unavailable', 'dep.user': 'dependency_invalid' });
      await expect(second.call('dep.user', 'greet', 'x')).rejects.toMatchObject({
        code: 'plugin_failed',
        details: { causeCode: 'dependency_invalid' },
      });
      await proxy.up();
      expect(text((await second.call('dep.user', 'greet', 'again')).output)).toBe('Hello, again!');
      expect(state()).toEqual({ 'dep.base': 'ready', 'dep.user': 'ready' });
    } finally {
      await second.close();
    }
  }, 120_000);
});

describe('a Docker engine that goes away while a plugin with a data directory restarts', () => {
  it("a container that could not be removed keeps the directory's group until it is; the last sandbox gives it back", async () => {
    const proxy = new EngineProxy(lastingDir('reed-engine-'));
    await proxy.up();
    const root = tempDir();
    writePlugin(
      root,
      'fs.a',
      { id: 'fs.a', permissions: { filesystem: 'readwrite' } },
      { 'plugin.wasm': readFileSync(join(REPO, 'test/fixtures/data-dir/files/plugin.wasm')) },
    );
    const { host, dir } = await startHost([root], {
      mode: 'container',
      reedToml: `${TOML}[policy.permissions]\nfilesystem = "readwrite"\n`,
      supervision: FAST,
      docker: new Docker({ socketPath: proxy.path, timeout: CLIENT_TIMEOUT_MS }),
    });
    const engine = new Docker();
    const containers = async () =>
      engine.listContainers({
        all: true,
        filters: { label: [`reed.host.session=${host.session.id}`, 'reed.plugin.id=fs.a'] },
      });
    try {
      await host.call('fs.a', 'put', 'notes.txt\nkept');
      const path = join(dir, 'data', 'files', 'fs.a');
      const group = statSync(path).gid;
      expect(group).not.toBe(process.getgid?.());
      const runner = () =>
        ((host.sandbox('fs.a') as LazySandbox).inner as SupervisedSandbox).runner as ContainerRunner;
      const first = runner();
      expect(first.pid).toBeGreaterThan(0);
      await proxy.down();
      // The container dies (its init, killed on the machine) while the engine cannot remove it: it still holds the
      // group, which neither goes back to the host nor to another lease while restarts fail.
      process.kill(first.pid as number, 'SIGKILL');
      const pause = () => new Promise((r) => setTimeout(r, 200));
      const deadline = Date.now() + 30_000;
      let code = '';
      while (code !== 'docker_unavailable' && Date.now() < deadline) {
        code = await host.call('fs.a', 'preopen').then(
          () => 'answered',
          (e: { code?: string }) => e.code ?? '',
        );
        await pause();
      }
      expect(code).toBe('docker_unavailable');
      expect(statSync(path).gid).toBe(group);
      expect((await containers()).map((c) => c.Id)).toEqual([first.container?.id]);
      // Back: a new container, of the same group; the dead one is removed then, and the group stays the new one's.
      await proxy.up();
      const back = Date.now() + 30_000;
      let notes = '';
      while (notes !== 'kept' && Date.now() < back) {
        notes = await host.call('fs.a', 'get', 'notes.txt').then(
          (r) => text(r.output),
          () => '',
        );
        if (notes !== 'kept') await pause();
      }
      expect(notes).toBe('kept');
      const second = runner();
      expect(second).not.toBe(first);
      while ((await containers()).length > 1 && Date.now() < back) await pause();
      expect((await containers()).map((c) => c.Id)).toEqual([second.container?.id]);
      const user = (await engine.getContainer(second.container?.id as string).inspect()).Config.User;
      expect([user, statSync(path).gid]).toEqual([`65534:${group}`, group]);
      await host.close();
      expect(statSync(path).gid).toBe(process.getgid?.());
    } finally {
      await proxy.up();
      await host.close();
      await proxy.down();
    }
  }, 120_000);
});
