import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { Sandbox } from '../../src/backends/sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { ReedError } from '../../src/errors.js';
import { subscribeEvent } from '../../src/events/events.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { scanPlugins } from '../../src/host/scan-plugins.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { startHost, text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { alive } from '../helpers/processes.js';

/** The pid of a process-mode sandbox's runner (bwrap's, whose group holds the runner). */
const runnerPid = (sandbox: Sandbox) => ((sandbox as LazySandbox).inner as SupervisedSandbox).runner?.pid;

const EXAMPLES = join(import.meta.dirname, '../../examples/plugins');

/** A plugin directory: a manifest and the WASM of an example plugin. */
function plugin(root: string, name: string, manifest: string, wasmFrom: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'plugin.toml'), manifest);
  copyFileSync(join(EXAMPLES, wasmFrom, 'plugin.wasm'), join(dir, 'plugin.wasm'));
  return dir;
}

const hello = (version: string) =>
  `[metadata]\nid = "example.hello"\nname = "Hello"\nversion = "${version}"\napi_version = "1.0.0"\n[permissions]\nlog = true\n[configuration]\ngreeting = "Hello"\n`;
const dependant = `[metadata]\nid = "test.dependant"\nname = "Dependant"\nversion = "1.0.0"\napi_version = "1.0.0"\n[[requirements.dependencies]]\nid = "example.hello"\nversion = ">=0.1"\n[configuration]\ngreeting = "Hi"\n`;

/** The valid candidate with this id found under `dir` (a scan of that directory alone, as an installer would). */
function candidateIn(dir: string, id: string) {
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [dir], defaultSearchPaths: false },
  });
  const found = scanPlugins(config, [{ id: 'example.hello', version: '1.0.0' }]).candidates.find(
    (c) => c.id === id,
  );
  if (found === undefined || found.manifest === undefined) throw new Error(`no ${id} in ${dir}`);
  return found as typeof found & { id: string; manifest: NonNullable<typeof found.manifest> };
}

describe.each<SandboxMode>(['none', 'process'])(
  'the plugin set changes while the host runs (mode %s)',
  (mode) => {
    it('adds a plugin after start, which then serves calls', async () => {
      const base = tempDir('reed-set-');
      plugin(base, 'hello', hello('0.1.0'), 'hello');
      const later = tempDir('reed-set-later-');
      plugin(later, 'dependant', dependant, 'hello');
      const { host } = await startHost([base], { mode });
      try {
        expect(host.status().map((s) => s.id)).toEqual(['example.hello']);
        const status = await host.add(candidateIn(later, 'test.dependant'));
        expect(status).toMatchObject({ id: 'test.dependant', state: 'ready', mode });
        expect(text((await host.call('test.dependant', 'greet', 'you')).output)).toBe('Hello, you!');
        await expect(host.add(candidateIn(later, 'test.dependant'))).rejects.toMatchObject({
          code: 'plugin_already_loaded',
        });
      } finally {
        await host.close();
      }
    });

    it('replaces a plugin: the new version serves, the old sandbox is gone, dependants keep running', async () => {
      const base = tempDir('reed-set-');
      plugin(base, 'hello', hello('0.1.0'), 'hello');
      plugin(base, 'dependant', dependant, 'hello');
      const next = tempDir('reed-set-next-');
      // Version 0.2.0 runs other code: the AssemblyScript greeter's module.
      plugin(next, 'hello', `${hello('0.2.0')}salutation = "Good day"\n`, 'as-greeter');
      const { host } = await startHost([base], { mode });
      try {
        const old = host.sandbox('example.hello');
        const oldDependant = host.sandbox('test.dependant');
        const oldPid = mode === 'process' ? runnerPid(old) : undefined;
        if (oldPid !== undefined) expect(alive(oldPid)).toBe(true);
        expect(text((await host.call('example.hello', 'greet', 'you')).output)).toBe('Hello, you!');
        const status = await host.replace('example.hello', candidateIn(next, 'example.hello'));
        expect(status).toMatchObject({ id: 'example.hello', version: '0.2.0', state: 'ready' });
        expect(text((await host.call('example.hello', 'greet', 'you')).output)).toBe(
          'Good day, you! (from AssemblyScript)',
        );
        // The old sandbox was closed: it takes no calls. The dependant was not touched (its range still holds).
        await expect(old.call('greet', new Uint8Array())).rejects.toMatchObject({
          code: 'plugin_not_loaded',
        });
        if (oldPid !== undefined) expect(alive(oldPid)).toBe(false);
        expect(host.sandbox('test.dependant')).toBe(oldDependant);
        expect(text((await host.call('test.dependant', 'greet', 'me')).output)).toBe('Hello, me!');
        expect(host.status().map((s) => [s.id, s.state])).toEqual([
          ['example.hello', 'ready'],
          ['test.dependant', 'ready'],
        ]);
      } finally {
        await host.close();
      }
    });

    it('removes a plugin with a dependant only when asked to, dependants first', async () => {
      const base = tempDir('reed-set-');
      plugin(base, 'hello', hello('0.1.0'), 'hello');
      plugin(base, 'dependant', dependant, 'hello');
      const { host } = await startHost([base], { mode });
      try {
        const refused = await host.remove('example.hello').catch((e: ReedError) => e);
        expect(refused).toMatchObject({
          code: 'plugin_has_dependants',
          details: { dependants: ['test.dependant'] },
        });
        expect(text((await host.call('example.hello', 'greet', 'still')).output)).toBe('Hello, still!');
        expect(await host.remove('example.hello', { withDependants: true })).toEqual([
          'test.dependant',
          'example.hello',
        ]);
        expect(host.status()).toEqual([]);
        await expect(host.call('example.hello', 'greet')).rejects.toMatchObject({
          code: 'plugin_not_loaded',
        });
        await expect(host.remove('example.hello')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
      } finally {
        await host.close();
      }
    });
  },
);

describe('the host stops its plugins (process mode)', () => {
  it('dependants before their dependencies, and the plugins independent of each other together', async () => {
    const base = tempDir('reed-set-');
    plugin(base, 'hello', hello('0.1.0'), 'hello');
    plugin(base, 'dependant', dependant, 'hello');
    plugin(
      base,
      'other',
      dependant
        .replace('test.dependant', 'test.other')
        .replace(/\[\[requirements[\s\S]*?version = ">=0.1"\n/, ''),
      'hello',
    );
    const { host } = await startHost([base], { mode: 'process' });
    const ids = ['example.hello', 'test.dependant', 'test.other'];
    expect(
      host
        .status()
        .map((p) => [p.id, p.state])
        .sort(),
    ).toEqual(ids.map((id) => [id, 'ready']));
    const supervisors = new Map(
      ids.map((id) => [id, (host.sandbox(id) as LazySandbox).inner as SupervisedSandbox]),
    );
    // At each plugin's stopped event: which of the others were still being served (their supervisor not closing).
    const stillServing: Record<string, Promise<string[]>> = {};
    const off = subscribeEvent('reed:plugin:stopped', (event) => {
      stillServing[event.pluginId] = Promise.all(
        ids.map(async (id) => ((await supervisors.get(id)?.health())?.detail === 'closed' ? '' : id)),
      ).then((list) => list.filter((id) => id !== ''));
    });
    try {
      await host.close();
    } finally {
      off();
    }
    // The dependant and the other plugin were stopped together: neither saw the other still served when it ended
    // (one after the other, the first to end would); their dependency was still served then, and stopped last.
    expect(await stillServing['test.dependant']).toEqual(['example.hello']);
    expect(await stillServing['test.other']).toEqual(['example.hello']);
    expect(Object.keys(stillServing).at(-1)).toBe('example.hello');
  });
});
