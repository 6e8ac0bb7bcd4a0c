import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { listManagedContainers, localEngineSocket } from '../../src/backends/container/sweep.js';

// The start-up sweep lists the local engine's containers over node:http and removes them through dockerode: both
// must reach the engine dockerode itself would use (Docker Desktop's socket under $HOME before the system one), or
// the sweep would list one engine and remove on another.

const home = process.env.HOME;
const scratch: string[] = [];
afterEach(() => {
  process.env.HOME = home;
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The socket a default dockerode client picks (docker-modem resolves it lazily, as a promise). */
async function dockerodeSocket(): Promise<string> {
  const path = (new Dockerode().modem as unknown as { socketPath: unknown }).socketPath;
  return typeof path === 'function' ? await (path as () => Promise<string>)() : (path as string);
}

describe('the local engine socket', () => {
  it('is the system socket when $HOME has no Docker Desktop socket, as dockerode picks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reed-engine-home-'));
    scratch.push(dir);
    process.env.HOME = dir;
    expect(localEngineSocket()).toBe('/var/run/docker.sock');
    expect(await dockerodeSocket()).toBe('/var/run/docker.sock');
  });

  it('is $HOME/.docker/run/docker.sock when there is one, as dockerode picks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reed-engine-home-'));
    scratch.push(dir);
    mkdirSync(join(dir, '.docker', 'run'), { recursive: true });
    writeFileSync(join(dir, '.docker', 'run', 'docker.sock'), '');
    process.env.HOME = dir;
    const user = join(dir, '.docker', 'run', 'docker.sock');
    expect(localEngineSocket()).toBe(user);
    expect(await dockerodeSocket()).toBe(user);
  });
});

describe('the sweep’s container listing', () => {
  // The engine is trusted, but what it answers is parsed defensively: an entry without a container id was listed
  // as the container "undefined".
  it('keeps only entries with a container id, and refuses an answer that is not a list', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reed-engine-listing-'));
    scratch.push(dir);
    const socket = join(dir, 'engine.sock');
    const id = 'a'.repeat(64);
    let answer: unknown = [
      { Id: id, Labels: { 'reed.managed': 'true' } },
      { Labels: { 'reed.managed': 'true' } },
      { Id: 42 },
      { Id: '../../x' },
      null,
    ];
    const server = createServer((_req, res) => res.end(JSON.stringify(answer)));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      expect(await listManagedContainers(socket, 5_000)).toEqual([
        { id, labels: { 'reed.managed': 'true' } },
      ]);
      answer = { message: 'not a list' };
      await expect(listManagedContainers(socket, 5_000)).rejects.toThrow(/not a list/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
