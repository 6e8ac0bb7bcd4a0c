import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunnerCgroup, TenantCgroup, weightToShares } from '../../src/backends/process/cgroup.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * The files a tenant's cgroup and its runners' are made of, for the cgroup version this machine does not run
 * (integration/tenant-resources-* run the real one): a tree shaped as cgroupfs is, in a temporary directory.
 */
const read = (...path: string[]) => readFileSync(join(...path), 'utf8').trim();

describe("a tenant's cgroup, by cgroup version", () => {
  it('v2: memory.max without swap and cpu.weight on the tenant, the controllers handed down, runners inside', () => {
    const root = tempDir('reed-cg2-');
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids');
    const tenant = TenantCgroup.create('h1.2.3-abcd-t-acme', { memoryBytes: 64 << 20, cpuWeight: 50 }, root);
    expect(tenant).toMatchObject({ version: 2, cpuWeighted: true });
    const dir = join(root, 'reed', 'h1.2.3-abcd-t-acme');
    expect(read(dir, 'memory.max')).toBe(String(64 << 20));
    expect(read(dir, 'cpu.weight')).toBe('50');
    expect(read(root, 'reed', 'cgroup.subtree_control')).toBe('+cpu');
    expect(read(dir, 'cgroup.subtree_control')).toBe('+cpu');
    const runner = RunnerCgroup.create(
      'h1.2.3-abcd-r1',
      { memoryBytes: 1 << 30, pids: 48, cpus: 1 },
      root,
      tenant,
    );
    expect(runner?.dirs).toEqual([join(dir, 'h1.2.3-abcd-r1')]);
    expect(read(dir, 'h1.2.3-abcd-r1', 'memory.max')).toBe(String(1 << 30));
    expect(read(dir, 'h1.2.3-abcd-r1', 'cpu.max')).toBe('100000 100000');
  });

  it('v1: the tenant in the memory, pids and cpu hierarchies (cpu.shares), a runner in all three under it', () => {
    const root = tempDir('reed-cg1-');
    for (const h of ['memory', 'pids', 'cpu']) mkdirSync(join(root, h));
    writeFileSync(join(root, 'cpu', 'cpu.shares'), '1024');
    writeFileSync(join(root, 'cpu', 'cpu.cfs_quota_us'), '-1');
    const tenant = TenantCgroup.create('t', { memoryBytes: 64 << 20, cpuWeight: 10_000 }, root);
    expect(tenant).toMatchObject({ version: 1, cpuWeighted: true });
    expect(read(root, 'memory', 'reed', 't', 'memory.limit_in_bytes')).toBe(String(64 << 20));
    expect(read(root, 'cpu', 'reed', 't', 'cpu.shares')).toBe('262144');
    const runner = RunnerCgroup.create('r', { memoryBytes: 1 << 30, pids: 48 }, root, tenant);
    // No quota of its own, yet in the cpu hierarchy: under the tenant's weight.
    expect(runner?.dirs).toEqual(['memory', 'pids', 'cpu'].map((h) => join(root, h, 'reed', 't', 'r')));
    expect(existsSync(join(root, 'cpu', 'reed', 't', 'r', 'cpu.cfs_quota_us'))).toBe(false);
  });

  it('maps cpu_weight onto cpu.shares as runc does, ends included', () => {
    expect([1, 100, 10_000].map(weightToShares)).toEqual([2, 2_597, 262_144]);
  });
});
