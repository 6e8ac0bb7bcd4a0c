import { spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import { sweepCgroups } from '../../src/backends/process/cgroup.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { REPO } from '../helpers/cli.js';
import { text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Issue 14, memory and CPU per tenant in process mode: each tenant's runners live in cgroups under one cgroup of
 * the tenant's (reed/<host>-t-<tenant>/), whose memory limit is the tenant's memory_mb for all of them together
 * and whose CPU weight is its cpu_weight. These run on the machine's real cgroups (the host is root here, as CI's).
 */
const CGROUP = '/sys/fs/cgroup';
const V2 = existsSync(join(CGROUP, 'cgroup.controllers'));
const memoryRoot = V2 ? CGROUP : join(CGROUP, 'memory');
const cpuRoot = V2 ? CGROUP : join(CGROUP, 'cpu');

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

/** The membomb fixture with a limit of its own (memory_mb 512) far above its tenant's. */
function bombTree(): string {
  const root = tempDir('reed-tenant-bomb-');
  cpSync(join(REPO, 'test/fixtures/native-process/membomb'), join(root, 'membomb'), { recursive: true });
  const toml = join(root, 'membomb', 'plugin.toml');
  writeFileSync(toml, readFileSync(toml, 'utf8').replace('memory_mb = 32', 'memory_mb = 512'));
  return root;
}

async function tenantHost(tenant: string, quotas: TenantQuotas) {
  const dir = tempDir('reed-tenant-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n',
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [bombTree()], defaultSearchPaths: false },
  });
  const host = await PluginHost.start({
    config,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: ['proc.membomb'],
    forceMode: 'process',
    supervision: { restartBaseMs: 20, restartMaxMs: 200, maxCrashes: 5, crashWindowMs: 60_000 },
    tenant: { id: tenant, quotas },
  });
  hosts.push(host);
  return host;
}

const runnerOf = (host: PluginHost) =>
  ((host.sandbox('proc.membomb') as LazySandbox).inner as SupervisedSandbox).runner as RunnerProcess;

/** The tenant cgroups of this test process's hosts named for `tenant`, under `root`'s reed/. */
const tenantCgroups = (root: string, tenant: string, pid = process.pid) => {
  try {
    return readdirSync(join(root, 'reed')).filter(
      (name) => name.endsWith(`-t-${tenant}`) && name.split('.')[1] === String(pid),
    );
  } catch {
    return [];
  }
};

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
    const child = spawn(process.execPath, [join(REPO, 'test/fixtures/hosts/tenant-host.mjs'), runtimeDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const runner = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const line = /ready (\d+)\n/.exec(out);
        if (line) resolve(Number(line[1]));
      });
      child.once('exit', () => reject(new Error(`host exited early: ${out}`)));
    });
    const [group] = tenantCgroups(memoryRoot, 'killed', child.pid);
    expect(group).toBeDefined();
    const dir = join(memoryRoot, 'reed', group as string);
    expect(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory())).toHaveLength(1);
    expect(runner).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(dir)).toBe(true); // what the dead host left
    // (Any host starting on this machine sweeps too: what counts is that nothing is left.)
    sweepCgroups();
    expect(existsSync(dir)).toBe(false);
    expect(tenantCgroups(cpuRoot, 'killed', child.pid)).toEqual([]);
  }, 60_000);
});
