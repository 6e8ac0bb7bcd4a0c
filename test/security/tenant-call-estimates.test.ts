import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { MemoryStorage } from '../../src/host/services.js';
import { TenantRegistry } from '../../src/tenants/registry.js';
import { CALL_ESTIMATES, TenantHost } from '../../src/tenants/tenant-host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

/**
 * Adversarial pass (session 10), f256b38: a call of a function that lately took longer than what is left of the
 * tenant's turn slice waits for the next turn (TenantHost, CALL_ESTIMATES), which bounds a tenant's stretch on the
 * host's thread to about the slice or one call. The memory of what functions took holds CALL_ESTIMATES names, and
 * callers name functions: a tenant that calls CALL_ESTIMATES names its plugin does not export (each refused
 * function_not_found, no plugin code run) makes the host forget its slow function, whose next call then starts
 * behind a cheap one in the same turn and runs on past the slice, as before f256b38: the tenant chooses when the
 * bound holds.
 */
const SOURCE = `
#include <stdint.h>
static volatile uint64_t sink;
__attribute__((export_name("spin"))) int32_t spin(void) {
  for (uint32_t i = 0; i < 1000000; i++) sink += i;
  return 0;
}
__attribute__((export_name("ok"))) int32_t ok(void) { return 0; }
`;

const registries: TenantRegistry[] = [];
afterEach(async () => {
  for (const r of registries.splice(0)) await r.close();
});

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('what a tenant’s functions took (CALL_ESTIMATES) against the tenant', () => {
  it('is not forgotten for its slow function when it calls CALL_ESTIMATES names that do not exist', async () => {
    const dir = tempDir('reed-adv-estimates-');
    writePlugin(
      join(dir, 'plugins-a'),
      'fair.load',
      { id: 'fair.load', entry_point: 'plugin.wasm', sandbox: { mode: 'none' } },
      { 'plugin.wasm': buildWasiC(SOURCE, { reactor: true }) },
    );
    writeFileSync(
      join(dir, 'reed.toml'),
      'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n' +
        '[tenants.a]\nplugin_dirs = ["plugins-a"]\n',
    );
    const registry = await TenantRegistry.start({
      config: loadHostConfig({ cwd: dir, env: {}, home: dir, overrides: { defaultSearchPaths: false } }),
      forceMode: 'none',
      logger: pino({ level: 'silent' }),
      storage: () => new MemoryStorage(),
      audit: false,
    });
    registries.push(registry);
    const a = registry.get('a');
    if (!(a instanceof TenantHost)) throw new Error('tenant a did not start');
    await a.call('fair.load', 'ok');
    await a.call('fair.load', 'spin');
    // Names the plugin does not export, one a turn (none deferred): each is refused and remembered.
    for (let i = 0; i < CALL_ESTIMATES; i++) {
      await nextTurn();
      await a.call('fair.load', `no-such-${i}`).catch((error: { code?: string }) => {
        expect(error.code).toBe('function_not_found');
      });
    }
    await nextTurn();
    const before = a.deferredCalls;
    await Promise.all([a.call('fair.load', 'ok'), a.call('fair.load', 'spin')]);
    // Today: 0, the spin started behind the cheap call in the same turn (its time forgotten).
    expect(a.deferredCalls - before).toBe(1);
  }, 60_000);
});
