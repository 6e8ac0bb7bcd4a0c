import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { hostileRunnerImage, NODE_IN_IMAGE, RUNNERS_IN_IMAGE } from '../helpers/hostile-image.js';
import { commandLines } from '../helpers/processes.js';

/**
 * Container mode against hostile runners: the fixtures of test/fixtures/runners, in an image made FROM the
 * runner image, started in place of the sandbox-runner. The host must treat the container exactly as it treats
 * a hostile process: no ready, a typed error, and nothing left behind.
 */
const docker = new Docker();
let image: string;
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function hostileHost(runtime: string, command: string[]) {
  const started = await startHost([join(REPO, 'examples/plugins')], {
    mode: 'container',
    plugins: ['example.hello'],
    reedToml: `[signatures]\nrequire = "none"\n[sandbox]\nruntime = "${runtime}"\n`,
    supervision: { startTimeoutMs: 4_000 },
    runnerImage: image,
    runnerCommand: command,
  });
  hosts.push(started.host);
  return started;
}

/** Containers of a host's session, and whether any process still names one of them (runsc's shim, gofer, sandbox). */
async function leftovers(host: PluginHost, since: number) {
  const label = `reed.host.session=${host.session.id}`;
  const containers = await docker.listContainers({ all: true, filters: { label: [label] } });
  const events = await new Promise<string>((resolve, reject) =>
    docker.getEvents(
      { since, until: Math.ceil(Date.now() / 1000), filters: { type: ['container'], label: [label] } },
      (error, stream) => {
        if (error || stream === undefined) return reject(error);
        let text = '';
        stream.on('data', (c: Buffer) => {
          text += c.toString();
        });
        stream.on('end', () => resolve(text));
      },
    ),
  );
  const ids = [...new Set([...events.matchAll(/"id":"([0-9a-f]{64})"/g)].map((m) => m[1] as string))];
  const processes = commandLines().filter((line) => ids.some((id) => line.includes(id)));
  return { ids, containers: containers.map((c) => c.Id), processes };
}

beforeAll(async () => {
  image = await hostileRunnerImage(docker, 'reed-test-hostile-runners:latest');
}, 180_000);

describe.each(['runc', 'runsc'])('hostile runners in containers (%s)', (runtime) => {
  it.each([
    ['no-handshake.mjs', 'sandbox_start_failed', ''],
    ['wrong-secret.mjs', 'handshake_failed', ''],
    ['log-and-hang.mjs', 'sandbox_start_failed', 'hostile runner: not connecting back, ever'],
  ])(
    '%s never becomes ready (%s); its container and socket directory are removed',
    async (runner, code, said) => {
      const since = Math.floor(Date.now() / 1000) - 1;
      const { host, dir } = await hostileHost(runtime, [NODE_IN_IMAGE, `${RUNNERS_IN_IMAGE}/${runner}`]);
      const [status] = host.status();
      expect(status).toMatchObject({ state: 'failed', error: { code } });
      // A container that does not become ready has its logs in the error.
      expect(status?.error?.message).toContain(said);
      const left = await leftovers(host, since);
      expect(left.ids.length).toBeGreaterThan(0); // it did make a container
      expect(left.containers).toEqual([]);
      expect(left.processes).toEqual([]);
      expect(readdirSync(join(dir, 'runtime', 'sandboxes'))).toEqual([]);
    },
  );

  it('a container that fails to start is a sandbox_start_failed and leaves no container or process behind', async () => {
    const since = Math.floor(Date.now() / 1000) - 1;
    const { host, dir } = await hostileHost(runtime, ['/nonexistent/runner']);
    expect(host.status()[0]).toMatchObject({ state: 'failed', error: { code: 'sandbox_start_failed' } });
    const left = await leftovers(host, since);
    expect(left.ids.length).toBeGreaterThan(0);
    expect(left.containers).toEqual([]);
    expect(left.processes).toEqual([]);
    expect(readdirSync(join(dir, 'runtime', 'sandboxes'))).toEqual([]);
  });
});
