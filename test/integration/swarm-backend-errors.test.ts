import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { pidNamespace } from '../../src/backends/container/labels.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { stream, tarOf } from '../helpers/tar.js';

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

  it("sweeps a dead host's relay containers from the manager's engine when it starts", async () => {
    // A relay as a dead host left it (labels as SwarmRunner gives them): its host's pid is gone. The image is a
    // one-file image imported here (the container is made, never started: only its labels matter).
    const docker = new Docker({ socketPath: '/var/run/docker.sock' });
    const image = 'reed-test-swarm-relay-sweep:1';
    const progress = await docker.importImage(stream(await tarOf([{ name: 'x', content: 'x' }])), {
      repo: 'reed-test-swarm-relay-sweep',
      tag: '1',
    });
    await new Promise((resolve, reject) =>
      docker.modem.followProgress(progress, (error: Error | null) => (error ? reject(error) : resolve(null))),
    );
    const deadPid = spawnSync('true').pid as number;
    const relay = await docker.createContainer({
      Image: image,
      Cmd: ['/x'],
      Labels: {
        'reed.managed': 'true',
        'reed.swarm.kind': 'relay',
        'reed.plugin.id': 'example.hello',
        'reed.host.session': 'deadbeef-0000-4000-8000-00000000abcd',
        'reed.host.pid': String(deadPid),
        'reed.host.start': 'gone',
        'reed.host.pidns': pidNamespace(),
      },
    });
    try {
      await load('');
      await expect(relay.inspect()).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      await relay.remove({ force: true }).catch(() => {});
      await docker
        .getImage(image)
        .remove({ force: true })
        .catch(() => {});
    }
  }, 60_000);
});
