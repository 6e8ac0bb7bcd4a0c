import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHURN_BACKOFF_MAX_MS,
  CHURN_BACKOFF_MS,
  FuelBudget,
  TenantMemory,
} from '../../src/backends/in-process/tenant-budget.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { FUEL_PER_TRAP } from '../../src/runtime/wasm/abi.js';
import type { TenantQuotas } from '../../src/tenant-quotas.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

/**
 * Issue 14, memory and CPU per tenant in mode none: the WASM memories of a tenant's instances share its
 * memory_mb (a grow past it fails as one past limits.memory_mb does, and the call answers quota_exceeded), and
 * its calls share fuel_per_second (a call that finds it spent is refused with quota_exceeded and retryAfterMs).
 */
const SOURCE = `
#include <stdint.h>
static volatile uint64_t sink;
/* Grows the memory by 1 MiB; traps when the grow is refused, as a C program's failed allocation would abort. */
__attribute__((export_name("grow"))) int32_t grow(void) {
  if (__builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1) __builtin_trap();
  return 0;
}
/* Grows by 1 MiB and answers status 1 when the grow is refused, as a C program handling a failed allocation. */
__attribute__((export_name("try_grow"))) int32_t try_grow(void) {
  return __builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1 ? 1 : 0;
}
/* Burns fuel: about ten million loop iterations. */
__attribute__((export_name("spin"))) int32_t spin(void) {
  for (uint32_t i = 0; i < 10000000; i++) sink += i;
  return 0;
}
__attribute__((export_name("ok"))) int32_t ok(void) { return 0; }
__attribute__((export_name("trap"))) int32_t trap(void) { __builtin_trap(); }
`;

let wasm: Buffer | undefined;
const plugins = (ids: string[]) => {
  wasm ??= buildWasiC(SOURCE, { reactor: true });
  const root = tempDir('reed-tenant-none-');
  for (const id of ids)
    writePlugin(
      root,
      id,
      { id, entry_point: 'plugin.wasm', limits: { memory_mb: 16 }, sandbox: { mode: 'none' } },
      { 'plugin.wasm': wasm },
    );
  return root;
};

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function tenantHost(tenant: string, quotas: TenantQuotas, ids: string[]) {
  const dir = tempDir('reed-tenant-host-');
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  writeFileSync(
    join(dir, 'reed.toml'),
    'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n[policy.limits]\nfuel_per_call = 10000000000\n',
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [plugins(ids)], defaultSearchPaths: false },
  });
  const host = await PluginHost.start({
    config,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: ids,
    forceMode: 'none',
    tenant: { id: tenant, quotas },
  });
  hosts.push(host);
  return host;
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe('mode none: a tenant’s WASM memory together', () => {
  it('refuses the grow that would pass memory_mb across its instances, while another tenant grows on', async () => {
    const a = await tenantHost('none-a', { memory_mb: 4 }, ['mem.a1', 'mem.a2']);
    const b = await tenantHost('none-b', { memory_mb: 64 }, ['mem.b1']);
    // mem.a1 takes 3 MiB more than it started with; alone, mem.a2 could grow to its own 16 MiB.
    for (let i = 0; i < 3; i++) await a.call('mem.a1', 'grow');
    const error = await failure(a.call('mem.a2', 'grow'));
    expect(error).toMatchObject({
      code: 'quota_exceeded',
      pluginId: 'mem.a2',
      details: { quota: 'memory_mb', limit: 4, tenant: 'none-a', retryAfterMs: null },
    });
    await expect(a.call('mem.a1', 'grow')).rejects.toMatchObject({ code: 'quota_exceeded' });
    // Tenant B's plugin grows past what tenant A has, in the same process.
    for (let i = 0; i < 6; i++) await b.call('mem.b1', 'grow');
    // The trap recycled mem.a2's instance; mem.a1 leaving frees its share for mem.a2.
    await a.remove('mem.a1');
    await a.call('mem.a2', 'grow');
    await a.call('mem.a2', 'grow');
  }, 60_000);
});

describe('mode none: a plugin that churns on its tenant’s memory quota', () => {
  it('is held back after a refused grow dropped its instance, instead of being instantiated again at once', async () => {
    const a = await tenantHost('churn-a', { memory_mb: 3 }, ['mem.churn']);
    const b = await tenantHost('churn-b', { memory_mb: 3 }, ['mem.churn']);
    // Grows until the quota refuses one; the plugin traps on it (as abort() on a failed malloc) and is dropped.
    let trapped: unknown;
    for (let i = 0; i < 8 && trapped === undefined; i++) trapped = await failure(a.call('mem.churn', 'grow'));
    expect(trapped).toMatchObject({
      code: 'quota_exceeded',
      details: { quota: 'memory_mb', retryAfterMs: null },
    });
    // The next call is refused before anything runs (it made a new instance and grew on before), with when to
    // retry; the refusal has no stack (a tenant calling in a loop gets one per call).
    const held = (await failure(a.call('mem.churn', 'ok'))) as {
      code: string;
      stack: string;
      details: object;
    };
    expect(held).toMatchObject({
      code: 'quota_exceeded',
      pluginId: 'mem.churn',
      details: { quota: 'memory_mb', limit: 3, tenant: 'churn-a', retryAfterMs: expect.any(Number) },
    });
    expect((held.details as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(held.stack).not.toMatch(/\n\s+at /);
    // Another tenant's same plugin is not held.
    await b.call('mem.churn', 'grow');
    await b.call('mem.churn', 'ok');
  }, 60_000);

  it('a plugin that handles the refused grow keeps its instance and is not held back', async () => {
    const a = await tenantHost('soft-a', { memory_mb: 3 }, ['mem.soft']);
    let refused: unknown;
    for (let i = 0; i < 8 && refused === undefined; i++)
      refused = await failure(a.call('mem.soft', 'try_grow'));
    expect(refused).toMatchObject({
      code: 'quota_exceeded',
      details: { quota: 'memory_mb', retryAfterMs: null },
    });
    // Made without a stack, as every quota's answer.
    expect((refused as Error).stack).not.toMatch(/\n\s+at /);
    await a.call('mem.soft', 'ok');
  }, 60_000);

  it('holds for CHURN_BACKOFF_MS, doubled at each churn soon after, lifted by more room', () => {
    let now = 0;
    let others = 0;
    const memory = new TenantMemory(4, 't', () => now);
    const holder = { memoryBytes: () => 0 };
    memory.add(holder);
    memory.add({ memoryBytes: () => others });
    memory.admit(holder, 'p');
    const retry = () => {
      try {
        memory.admit(holder, 'p');
        return undefined;
      } catch (error) {
        return (error as { details: { retryAfterMs: number } }).details.retryAfterMs;
      }
    };
    others = 2 * 1024 * 1024;
    memory.churned(holder, 'p');
    expect(retry()).toBe(CHURN_BACKOFF_MS);
    now = CHURN_BACKOFF_MS;
    expect(retry()).toBeUndefined();
    // Churns again at once: held twice as long, up to the most.
    memory.churned(holder, 'p');
    expect(retry()).toBe(2 * CHURN_BACKOFF_MS);
    for (let i = 0; i < 20; i++) memory.churned(holder, 'p');
    expect(retry()).toBe(CHURN_BACKOFF_MAX_MS);
    // Another of the tenant's instances shrinks: the call may fit now, so it is let through.
    others = 1024 * 1024;
    expect(retry()).toBeUndefined();
  });
});

describe('mode none: a tenant’s fuel per second', () => {
  it('refuses the tenant’s next call with retryAfterMs once a call spent its fuel, while another tenant calls on', async () => {
    // One spin is tens of millions of fuel: thousands of seconds of a 10,000 fuel per second budget.
    const a = await tenantHost('fuel-a', { fuel_per_second: 10_000 }, ['cpu.a1', 'cpu.a2']);
    const b = await tenantHost('fuel-b', {}, ['cpu.b1']);
    const spent = await a.call('cpu.a1', 'spin');
    expect(spent.stats.fuelConsumed).toBeGreaterThan(10_000_000);
    for (const id of ['cpu.a1', 'cpu.a2']) {
      const error = (await failure(a.call(id, 'ok'))) as { code: string; details: Record<string, number> };
      expect(error).toMatchObject({
        code: 'quota_exceeded',
        details: { quota: 'fuel_per_second', limit: 10_000, tenant: 'fuel-a' },
      });
      // The debt at 10,000 a second: over 1,000 s.
      expect(error.details.retryAfterMs).toBeGreaterThan(1_000_000);
    }
    for (let i = 0; i < 3; i++) await b.call('cpu.b1', 'spin');
  }, 60_000);

  // A third review: a trap costs the host ~88 us (its error and stack trace) beside the little fuel the run used.
  it('a trapping call is charged FUEL_PER_TRAP: the next is refused until the tenant’s fuel is back', async () => {
    const a = await tenantHost('trap-a', { fuel_per_second: 100_000 }, ['trap.a1']);
    expect(await failure(a.call('trap.a1', 'trap'))).toMatchObject({ code: 'wasm_trap' });
    const error = (await failure(a.call('trap.a1', 'ok'))) as {
      code: string;
      details: Record<string, number>;
    };
    expect(error).toMatchObject({ code: 'quota_exceeded', details: { quota: 'fuel_per_second' } });
    // The debt: FUEL_PER_TRAP less the second's 100,000, at 100,000 a second.
    expect(error.details.retryAfterMs).toBeGreaterThan(((FUEL_PER_TRAP - 100_000) / 100_000) * 1_000 - 1);
  }, 60_000);

  it('refills at fuel_per_second, one second deep, and says when it will have fuel again', () => {
    let now = 0;
    const budget = new FuelBudget(1_000, () => now);
    budget.admit('p');
    budget.charge(2_500); // -1,500: 1.5 s of debt
    expect(() => budget.admit('p')).toThrow(expect.objectContaining({ code: 'quota_exceeded' }));
    try {
      budget.admit('p');
    } catch (error) {
      expect((error as { details: { retryAfterMs: number } }).details.retryAfterMs).toBe(1_501);
      // A refusal without a stack (it is an answer, and a flooding tenant makes them by the ten thousand).
      expect((error as Error).stack).not.toMatch(/\n\s+at /);
    }
    now = 1_600;
    budget.admit('p');
    now = 100_000;
    expect(budget.balance()).toBe(1_000);
  });
});
