import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sweepCgroups } from '../../src/backends/process/cgroup.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { text } from '../helpers/host.js';
import { killHost, spawnHostFixture } from '../helpers/host-child.js';
import { tempDir } from '../helpers/plugin-tree.js';
import {
  bombRunner,
  cpuRoot,
  memoryRoot,
  tenantBombHost,
  tenantCgroups,
  V2,
} from '../helpers/tenant-cgroups.js';

/**
 * Issue 14, memory and CPU per tenant in process mode: each tenant's runners live in cgroups under one cgroup of
 * the tenant's (reed/<host>-t-<tenant>/), whose memory limit is the tenant's memory_mb for all of them together
 * and whose CPU weight is its cpu_weight. These run on the machine's real cgroups (the host is root here, as CI's).
 */
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

const tenantHost = (tenant: string, quotas: TenantQuotas) => tenantBombHost(hosts, 'process', tenant, quotas);
const runnerOf = (host: PluginHost) => bombRunner<RunnerProcess>(host);

describe('process mode: a cgroup per tenant', () => {
  it("holds the tenant's runners together to memory_mb and weighs them by cpu_weight; another tenant is untouched", async () => {
    const a = await tenantHost('res-a', { memory_mb: 160, cpu_weight: 50 });
    const b = await tenantHost('res-b', { memory_mb: 1024 });
    const [aGroup] = tenantCgroups(memoryRoot, 'res-a');
    expect(aGroup).toBeDefined();
    const aDir = join(memoryRoot, 'reed', aGroup as string);
    // The runner's own cgroup is inside the tenant's, and the tenant's carries the quotas.
    const runnerA = runnerOf(a);
    expect(runnerA.cgroup?.dirs[0]?.startsWith(`${aDir}/`)).toBe(true);
    if (V2) {
      expect(readFileSync(join(aDir, 'memory.max'), 'utf8').trim()).toBe(String(160 * 1024 * 1024));
      expect(readFileSync(join(aDir, 'cpu.weight'), 'utf8').trim()).toBe('50');
    } else {
      expect(readFileSync(join(aDir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(
        String(160 * 1024 * 1024),
      );
      // cpu.weight 50 as cpu.shares: 2 + (50 - 1) * 262142 / 9999.
      expect(readFileSync(join(cpuRoot, 'reed', aGroup as string, 'cpu.shares'), 'utf8').trim()).toBe('1287');
      expect(runnerA.cgroup?.dirs.some((d) => d.startsWith(join(cpuRoot, 'reed', aGroup as string)))).toBe(
        true,
      );
    }
    const bPid = runnerOf(b).pid;
    expect(text((await b.call('proc.membomb', 'ok')).output)).toBe('ok');

    // Its own limit is 512 + the runner's allowance; the tenant's 160 MiB is reached first.
    const error = await a.call('proc.membomb', 'attack').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      code: 'quota_exceeded',
      pluginId: 'proc.membomb',
      details: { quota: 'memory_mb', limit: 160, tenant: 'res-a' },
    });
    // Tenant B's runner is the same process, and answers.
    expect(runnerOf(b).pid).toBe(bPid);
    expect(text((await b.call('proc.membomb', 'ok')).output)).toBe('ok');
    // Tenant A's next runner serves again, in the same tenant cgroup.
    expect(text((await a.call('proc.membomb', 'ok')).output)).toBe('ok');
    expect(tenantCgroups(memoryRoot, 'res-a')).toEqual([aGroup]);

    await a.close();
    expect(existsSync(aDir)).toBe(false);
    expect(tenantCgroups(cpuRoot, 'res-a')).toEqual([]);
    expect(tenantCgroups(memoryRoot, 'res-b')).toHaveLength(1);
  }, 60_000);

  it("a tenant's cgroup and its runners' are swept after its host is killed with SIGKILL", async () => {
    const runtimeDir = tempDir('reed-tenant-death-');
    const { child, ready } = await spawnHostFixture('tenant-host', [runtimeDir]);
    const runner = Number(ready[0]);
    const [group] = tenantCgroups(memoryRoot, 'killed', child.pid);
    expect(group).toBeDefined();
    const dir = join(memoryRoot, 'reed', group as string);
    expect(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory())).toHaveLength(1);
    expect(runner).toBeGreaterThan(0);
    await killHost(child);
    // What the dead host left is swept: by this sweep, or already by any other host that started on this machine
    // meanwhile (every host sweeps at start; the parallel suite starts many), so its being there now is not asserted.
    sweepCgroups();
    expect(existsSync(dir)).toBe(false);
    expect(tenantCgroups(cpuRoot, 'killed', child.pid)).toEqual([]);
  }, 60_000);
});
