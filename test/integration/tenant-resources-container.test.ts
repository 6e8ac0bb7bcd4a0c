import { spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { REPO } from '../helpers/cli.js';
import { text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Issue 14, memory and CPU per tenant in container mode: a tenant's containers go under a cgroup of its own
 * (HostConfig.CgroupParent, the engine's cgroupfs driver as scripts/setup.sh starts it) whose memory limit is the
 * tenant's memory_mb for all of them and whose CPU weight is its cpu_weight. Real Docker, real cgroups.
 */
const CGROUP = '/sys/fs/cgroup';
const V2 = existsSync(join(CGROUP, 'cgroup.controllers'));
const memoryRoot = V2 ? CGROUP : join(CGROUP, 'memory');
const docker = new Docker();

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

function bombTree(): string {
  const root = tempDir('reed-tenant-bomb-');
  chmodSync(root, 0o755);
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
    forceMode: 'container',
    supervision: { restartBaseMs: 20, restartMaxMs: 200, maxCrashes: 5, crashWindowMs: 60_000 },
    tenant: { id: tenant, quotas },
  });
  hosts.push(host);
  return host;
}

const runnerOf = (host: PluginHost) =>
  ((host.sandbox('proc.membomb') as LazySandbox).inner as SupervisedSandbox).runner as ContainerRunner;

const tenantCgroups = (root: string, tenant: string, pid = process.pid) => {
  try {
    return readdirSync(join(root, 'reed')).filter(
      (name) => name.endsWith(`-t-${tenant}`) && name.split('.')[1] === String(pid),
    );
  } catch {
    return [];
  }
};

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
    const child = spawn(
      process.execPath,
      [join(REPO, 'test/fixtures/hosts/tenant-host.mjs'), runtimeDir, 'container'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('ready')) resolve();
      });
      child.once('exit', () => reject(new Error(`host exited early: ${out}`)));
    });
    const [group] = tenantCgroups(memoryRoot, 'killed', child.pid);
    expect(group).toBeDefined();
    const mine = async () =>
      (await docker.listContainers({ all: true, filters: { label: ['reed.managed=true'] } })).filter(
        (c) => Number(c.Labels['reed.host.pid']) === child.pid,
      );
    expect(await mine()).toHaveLength(1);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(everywhere(group as string).length).toBeGreaterThan(0);
    const config = loadHostConfig({
      cwd: runtimeDir,
      env: {},
      home: runtimeDir,
      overrides: { pluginDirs: [], defaultSearchPaths: false },
    });
    config.runtimeDir = runtimeDir;
    const next = await PluginHost.start({ config, logger: pino({ level: 'silent' }) });
    hosts.push(next);
    expect(await mine()).toEqual([]);
    expect(everywhere(group as string)).toEqual([]);
  }, 240_000);
});
