import Docker from 'dockerode';
import { beforeAll, describe, expect, it } from 'vitest';
import { api, expectConformantCall } from '../helpers/api.js';
import { CALLS } from '../helpers/conformance-cases.js';

/**
 * Runs in docker-compose.yml's `tests` service: two orchestrators run `reed-plugins serve` in containers of their
 * own, in container mode under runc and under runsc, and every call here goes through their APIs.
 */
/** runc=/path/api-runc.sock,runsc=/path/api-runsc.sock (set by docker-compose.yml). */
const ORCHESTRATORS = (process.env.REED_API_SOCKETS ?? '')
  .split(',')
  .filter(Boolean)
  .map((pair) => {
    const [runtime, socket] = pair.split('=') as [string, string];
    return { runtime, socket };
  });
const runtimeDir = process.env.REED_COMPOSE_DIR ?? '';
const docker = new Docker();

beforeAll(() => {
  // Fail, never skip, outside docker-compose: there is nothing to test against.
  expect(
    ORCHESTRATORS.map((o) => o.runtime),
    'REED_API_SOCKETS (set by docker-compose.yml)',
  ).toEqual(['runc', 'runsc']);
});

describe.each(ORCHESTRATORS)('the orchestrator under docker-compose ($runtime)', ({ runtime, socket }) => {
  it('is healthy and runs every loadable plugin in container mode', async () => {
    expect(await api(socket, 'GET', '/v1/health')).toEqual({ status: 200, body: { ok: true } });
    const { body } = await api(socket, 'GET', '/v1/plugins');
    const ready = body.plugins?.filter((p) => p.state === 'ready') ?? [];
    expect(ready.length).toBeGreaterThan(10);
    for (const p of ready) expect(p.mode).toBe('container');
  });

  it.each(CALLS)('conformance: %s.%s(%j)', (...call) => expectConformantCall(socket, call));

  it('made hardened plugin containers, labelled with its own container and session, mounting only the socket directory', async () => {
    await api(socket, 'POST', '/v1/plugins/example.hello/call/greet', 'compose');
    const service = runtime === 'runc' ? 'orchestrator' : `orchestrator-${runtime}`;
    const [orchestrator] = await docker.listContainers({
      filters: { label: [`com.docker.compose.service=${service}`] },
    });
    expect(orchestrator).toBeDefined();
    const [summary] = await docker.listContainers({
      filters: {
        label: [
          'reed.managed=true',
          'reed.plugin.id=example.hello',
          `reed.host.container=${orchestrator?.Id}`,
        ],
      },
    });
    expect(summary).toBeDefined();
    const c = await docker.getContainer(summary?.Id ?? '').inspect();
    const h = c.HostConfig as unknown as Record<string, unknown> & { Tmpfs: Record<string, string> };
    expect(h).toMatchObject({
      CapDrop: ['ALL'],
      Privileged: false,
      ReadonlyRootfs: true,
      NetworkMode: 'none',
      Init: true,
      IpcMode: 'private',
      Runtime: runtime,
    });
    expect(h.SecurityOpt).toContain('no-new-privileges:true');
    expect(h.Tmpfs['/tmp']).toMatch(/noexec.*nosuid|nosuid.*noexec/);
    expect(c.Config.User).toBe('65534:65534');
    expect(c.Config.Labels['reed.host.pidns']).toMatch(/^pid:\[\d+\]$/);
    const binds = c.Mounts.filter((m) => m.Type === 'bind');
    expect(binds).toHaveLength(1);
    // The engine resolved the orchestrator's path on the machine: the same path, as the compose file mounts it.
    expect(binds[0]?.Source.startsWith(`${runtimeDir}/${runtime}/`)).toBe(true);
    expect(c.Mounts.some((m) => (m.Source ?? '').includes('docker.sock'))).toBe(false);
  });
});
