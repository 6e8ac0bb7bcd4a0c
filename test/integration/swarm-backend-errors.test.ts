import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

// The swarm backend's refusals that need no swarm: each names the plugin and says what is missing. The main engine
// (/var/run/docker.sock) is a Docker engine that is not a swarm manager (the swarm tests use engines of their own).
async function load(registry: string): Promise<{ state: string; error?: { code: string; message: string } }> {
  const dir = tempDir('reed-swarm-errors-');
  writeFileSync(join(dir, 'reed.toml'), 'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n');
  const host = await PluginHost.start({
    config: loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
    }),
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    forceMode: 'container',
    plugins: ['example.hello'],
    swarm: { docker: new Docker({ socketPath: '/var/run/docker.sock' }), registry, relay: '127.0.0.1' },
  });
  try {
    const status = host.status().find((s) => s.id === 'example.hello');
    if (status === undefined) throw new Error('example.hello has no status');
    return status;
  } finally {
    await host.close();
  }
}

describe('the swarm backend without what it needs', () => {
  it('refuses a plugin when no registry is given', async () => {
    const status = await load('');
    expect(status.state).toBe('failed');
    expect(status.error?.message).toMatch(/plugin "example\.hello": the swarm backend has no registry/);
  }, 60_000);

  it("refuses a plugin when the engine is not a swarm manager, saying the swarm's state", async () => {
    const info = await new Docker({ socketPath: '/var/run/docker.sock' }).info();
    expect(info.Swarm.LocalNodeState).toBe('inactive');
    const status = await load('127.0.0.1:5000');
    expect(status.state).toBe('failed');
    expect(status.error?.message).toMatch(
      /plugin "example\.hello": the swarm backend's Docker engine is not a swarm manager \(swarm state inactive\)/,
    );
  }, 60_000);
});
