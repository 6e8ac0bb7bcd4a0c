// `[sandbox] replicas` in plugin.toml (issue 18 part 4): 1..16, 1 by default; above 1 refused in mode none, whether
// the manifest or the host chose the mode, with an error naming the plugin, the file and the field. One replica is
// the backend's sandbox itself (no ReplicaSet in the way).
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaSet, replicated } from '../../src/backends/replica-set.js';
import type { Sandbox } from '../../src/backends/sandbox.js';
import { parseManifest } from '../../src/manifest/parse-manifest.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const manifest = (sandbox: string) => `[metadata]
id = "replicas.check"
name = "Replicas check"
version = "1.0.0"
api_version = "1.0.0"

[sandbox]
${sandbox}
`;
const FILE = 'p/plugin.toml';
const errors = (sandbox: string) =>
  parseManifest(manifest(sandbox), FILE).diagnostics.filter((d) => d.severity === 'error');

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('[sandbox] replicas', () => {
  it('is 1..16 (absent: unset, the plan says 1); anything else is an error at its field', () => {
    expect(parseManifest(manifest('replicas = 4'), FILE).manifest?.sandbox).toEqual({ replicas: 4 });
    expect(parseManifest(manifest('mode = "container"\nreplicas = 16'), FILE).manifest?.sandbox).toEqual({
      mode: 'container',
      replicas: 16,
    });
    expect(parseManifest(manifest('mode = "process"'), FILE).manifest?.sandbox).toEqual({ mode: 'process' });
    for (const bad of [
      'replicas = 0',
      'replicas = 17',
      'replicas = 2.5',
      'replicas = "2"',
      'replicas = -1',
    ]) {
      const found = errors(bad);
      expect(found.length, bad).toBeGreaterThan(0);
      expect(found[0], bad).toMatchObject({
        file: FILE,
        field: 'sandbox.replicas',
        pluginId: 'replicas.check',
      });
    }
  });

  it('above 1 with mode = "none" in the manifest: replicas_unsupported, naming the plugin, file and field', () => {
    expect(errors('mode = "none"\nreplicas = 2')).toEqual([
      expect.objectContaining({
        code: 'replicas_unsupported',
        file: FILE,
        field: 'sandbox.replicas',
        pluginId: 'replicas.check',
        message: expect.stringContaining('sandbox.replicas = 2'),
      }),
    ]);
    expect(errors('mode = "none"\nreplicas = 1')).toEqual([]);
  });

  it('above 1 in mode none chosen by the host: the load fails with replicas_unsupported, naming the plugin, file and field', async () => {
    const dir = tempDir('reed-replicas-none-');
    cpSync(join(REPO, 'test/fixtures/replicas/who'), join(dir, 'who'), { recursive: true });
    const { host } = await startHost([dir], { mode: 'none', plugins: ['fixture.replicas'] });
    cleanups.push(() => host.close());
    const status = host.pluginStatus('fixture.replicas');
    expect(status.state).toBe('failed');
    expect(status.error?.code).toBe('replicas_unsupported');
    expect(status.error?.message).toContain('plugin "fixture.replicas"');
    expect(status.error?.message).toContain(join(dir, 'who', 'plugin.toml'));
    expect(status.error?.message).toContain('sandbox.replicas = 3');
  });

  it('one replica is the sandbox itself (no set); more make a ReplicaSet of that many', () => {
    const made: Sandbox[] = [];
    const make = () => {
      const sandbox = { pluginId: 'p' } as unknown as Sandbox;
      made.push(sandbox);
      return sandbox;
    };
    const one = replicated({ pluginId: 'p', mode: 'process', replicas: 1 }, make);
    expect(one).toBe(made[0]);
    expect(replicated({ pluginId: 'p', mode: 'process' }, make)).toBe(made[1]);
    const set = replicated({ pluginId: 'p', mode: 'container', replicas: 3 }, make);
    expect(set).toBeInstanceOf(ReplicaSet);
    expect((set as ReplicaSet).replicas).toEqual(made.slice(2));
    expect(made).toHaveLength(5);
  });
});
