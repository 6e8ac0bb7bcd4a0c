import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { REPO } from './cli.js';
import { tempDir } from './plugin-tree.js';

/**
 * What the tenant-resources tests of process and container mode share: the machine's real cgroups (the host is root
 * here, as CI's), and a host of one tenant running the membomb fixture.
 */
export const CGROUP = '/sys/fs/cgroup';
export const V2 = existsSync(join(CGROUP, 'cgroup.controllers'));
export const memoryRoot = V2 ? CGROUP : join(CGROUP, 'memory');
export const cpuRoot = V2 ? CGROUP : join(CGROUP, 'cpu');
export const BOMB = 'proc.membomb';

/** The membomb fixture with a limit of its own (memory_mb 512) far above its tenant's. */
function bombTree(): string {
  const root = tempDir('reed-tenant-bomb-');
  chmodSync(root, 0o755); // container mode builds an image from it as a user that is not root
  cpSync(join(REPO, 'test/fixtures/native-process/membomb'), join(root, 'membomb'), { recursive: true });
  const toml = join(root, 'membomb', 'plugin.toml');
  writeFileSync(toml, readFileSync(toml, 'utf8').replace('memory_mb = 32', 'memory_mb = 512'));
  return root;
}

/** A host of tenant `tenant` running the membomb plugin in `mode`; pushed on `hosts` for the caller to close. */
export async function tenantBombHost(
  hosts: PluginHost[],
  mode: 'process' | 'container',
  tenant: string,
  quotas: TenantQuotas,
): Promise<PluginHost> {
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
    plugins: [BOMB],
    forceMode: mode,
    supervision: { restartBaseMs: 20, restartMaxMs: 200, maxCrashes: 5, crashWindowMs: 60_000 },
    tenant: { id: tenant, quotas },
  });
  hosts.push(host);
  return host;
}

/** The runner (a RunnerProcess or a ContainerRunner) serving the membomb plugin of `host`. */
export const bombRunner = <R>(host: PluginHost): R =>
  ((host.sandbox(BOMB) as LazySandbox).inner as SupervisedSandbox).runner as R;

/** The tenant cgroups of host process `pid` (default: this test process) named for `tenant`, under `root`'s reed/. */
export const tenantCgroups = (root: string, tenant: string, pid = process.pid) => {
  try {
    return readdirSync(join(root, 'reed')).filter(
      (name) => name.endsWith(`-t-${tenant}`) && name.split('.')[1] === String(pid),
    );
  } catch {
    return [];
  }
};
