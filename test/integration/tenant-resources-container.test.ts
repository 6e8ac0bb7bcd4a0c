import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { text } from '../helpers/host.js';
import { killHost, spawnHostFixture, startSweepingHost } from '../helpers/host-child.js';
import { tempDir } from '../helpers/plugin-tree.js';
import {
  bombRunner,
  CGROUP,
  memoryRoot,
  tenantBombHost,
  tenantCgroups,
  V2,
} from '../helpers/tenant-cgroups.js';

/**
 * Issue 14, memory and CPU per tenant in container mode: a tenant's containers go under a cgroup of its own
 * (HostConfig.CgroupParent, the engine's cgroupfs driver as scripts/setup.sh starts it) whose memory limit is the
 * tenant's memory_mb for all of them and whose CPU weight is its cpu_weight. Real Docker, real cgroups.
 */
const docker = new Docker();

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

const tenantHost = (tenant: string, quotas: TenantQuotas) =>
  tenantBombHost(hosts, 'container', tenant, quotas);
const runnerOf = (host: PluginHost) => bombRunner<ContainerRunner>(host);

/** Every cgroup hierarchy's copy of a tenant's cgroup (v1: the engine makes one in each). */
const everywhere = (name: string) =>
  V2
    ? [join(CGROUP, 'reed', name)].filter(existsSync)
    : readdirSync(CGROUP, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => join(CGROUP, e.name, 'reed', name))
        .filter(existsSync);

describe('container mode: a CgroupParent per tenant (cgroupfs driver)', () => {
  it("holds the tenant's containers together to memory_mb under its cpu_weight; another tenant is untouched", async () => {
    const a = await tenantHost('ctr-a', { memory_mb: 160, cpu_weight: 50 });
    const b = await tenantHost('ctr-b', { memory_mb: 1024 });
    const [aGroup] = tenantCgroups(memoryRoot, 'ctr-a');
    expect(aGroup).toBeDefined();
    const inspected = (await (runnerOf(a).container as Docker.Container).inspect()) as unknown as {
      HostConfig: { CgroupParent: string; Memory: number };
    };
    expect(inspected.HostConfig.CgroupParent).toBe(`/reed/${aGroup}`);
    // Its own limit (512 MiB and the runner's allowance) stays; the tenant's is above it.
    expect(inspected.HostConfig.Memory).toBeGreaterThan(512 * 1024 * 1024);
    const aDir = join(memoryRoot, 'reed', aGroup as string);
    expect(readFileSync(join(aDir, V2 ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8').trim()).toBe(
      String(160 * 1024 * 1024),
    );
    if (V2) expect(readFileSync(join(aDir, 'cpu.weight'), 'utf8').trim()).toBe('50');
    else
      expect(readFileSync(join(CGROUP, 'cpu', 'reed', aGroup as string, 'cpu.shares'), 'utf8').trim()).toBe(
        '1287',
      );
    // The engine put the container's cgroup inside the tenant's.
    expect(readdirSync(aDir, { withFileTypes: true }).some((e) => e.isDirectory())).toBe(true);

    const bContainer = (runnerOf(b).container as Docker.Container).id;
    expect(text((await b.call('proc.membomb', 'ok')).output)).toBe('ok');
    const error = await a.call('proc.membomb', 'attack').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      code: 'quota_exceeded',
      details: { quota: 'memory_mb', limit: 160, tenant: 'ctr-a' },
    });
    expect((runnerOf(b).container as Docker.Container).id).toBe(bContainer);
    expect(text((await b.call('proc.membomb', 'ok')).output)).toBe('ok');
    expect(text((await a.call('proc.membomb', 'ok')).output)).toBe('ok');

    await a.close();
    expect(everywhere(aGroup as string)).toEqual([]);
  }, 240_000);

  it("a tenant's containers and cgroups are removed by the next host after its host is killed with SIGKILL", async () => {
    const runtimeDir = tempDir('reed-tenant-death-');
    const { child } = await spawnHostFixture('tenant-host', [runtimeDir, 'container']);
    const [group] = tenantCgroups(memoryRoot, 'killed', child.pid);
    expect(group).toBeDefined();
    const mine = async () =>
      (await docker.listContainers({ all: true, filters: { label: ['reed.managed=true'] } })).filter(
        (c) => Number(c.Labels['reed.host.pid']) === child.pid,
      );
    expect(await mine()).toHaveLength(1);
    await killHost(child);
    expect(everywhere(group as string).length).toBeGreaterThan(0);
    const next = await startSweepingHost(runtimeDir);
    hosts.push(next);
    expect(await mine()).toEqual([]);
    expect(everywhere(group as string)).toEqual([]);
  }, 240_000);
});
