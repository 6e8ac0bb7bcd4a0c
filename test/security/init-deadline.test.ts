// Mode none: a plugin's init runs on the host's thread, and before it had no deadline, only fuel. An init whose
// host calls cost more than their fuel (the seventh review: Extism variable lookups) held the host 164 s at load,
// and 4-4.5 s at every wake from idle whatever the call's 1 s deadline. Init now runs within call_timeout_ms, at
// load and at a wake (WasmPlugin.init, in-process-sandbox.ts), checked at every host import as a call's deadline is.
import { afterEach, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import type { ParsedCandidate } from '../../src/discovery/candidate.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { startHost } from '../helpers/host.js';
import { until } from '../helpers/idle.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';

const wabt = await wabtFactory();
/**
 * `_initialize`: while the storage key "slow" is set, storage_get in a loop (fuel enough for minutes of them: the
 * deadline must end it). `slow_next` sets the key; `ok` answers.
 */
const SLOW_INIT = (() => {
  const m = wabt.parseWat(
    'slow-init.wat',
    `(module
  (import "reed" "storage_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "reed" "storage_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "slow")
  (func (export "_initialize")
    (if (i32.ge_s (call $get (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 16)) (i32.const 0))
      (then (loop $l (drop (call $get (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 16))) (br $l)))))
  (func (export "slow_next") (result i32)
    (drop (call $put (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 4))) (i32.const 0))
  (func (export "ok") (result i32) (i32.const 0)))`,
  );
  try {
    return Buffer.from(m.toBinary({}).buffer);
  } finally {
    m.destroy();
  }
})();

const DEADLINE = 'init of plugin "init.slow" ran past its deadline (limits.call_timeout_ms = 300)';
const LIMITS = { call_timeout_ms: 300, fuel_per_call: 10_000_000_000 };
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.close();
});

async function start(idleTimeout?: string) {
  const root = tempDir('reed-init-deadline-');
  writePlugin(
    root,
    'slow',
    {
      id: 'init.slow',
      permissions: { storage: 'readwrite' },
      limits: LIMITS,
      ...(idleTimeout === undefined ? {} : { sandbox: { idle_timeout: idleTimeout } }),
    },
    { 'plugin.wasm': SLOW_INIT },
  );
  const { host } = await startHost([root], {
    mode: 'none',
    reedToml: '[signatures]\nrequire = "none"\n[policy.permissions]\nstorage = "readwrite"\n',
  });
  hosts.push(host);
  return host;
}

describe('mode none: init within call_timeout_ms', () => {
  it('an init that outlives its deadline fails the wake (init_failed: call_timeout), and the plugin stays idle', async () => {
    const host = await start('100ms');
    expect(host.pluginStatus('init.slow').state).toBe('ready');
    await host.call('init.slow', 'slow_next');
    await until(() => host.pluginStatus('init.slow').state === 'idle', 'the plugin to idle');
    // The wake runs init, which loops until its deadline (fuel would last minutes): init_failed, saying why.
    await expect(host.call('init.slow', 'ok')).rejects.toMatchObject({
      code: 'init_failed',
      message: expect.stringContaining(DEADLINE),
    });
    expect(host.pluginStatus('init.slow').state).toBe('idle');
  });

  it('an init that outlives its deadline at load fails the load (init_failed: call_timeout)', async () => {
    const first = await start();
    await first.call('init.slow', 'slow_next');
    // The same plugin loaded again over the same storage (reload): its init now loops.
    const candidate = first.scan.candidates.find((c) => c.id === 'init.slow') as ParsedCandidate;
    expect(candidate).toBeDefined();
    await first.remove('init.slow');
    const added = await first.add(candidate);
    expect(added).toMatchObject({
      state: 'failed',
      error: { code: 'init_failed', message: expect.stringContaining(DEADLINE) },
    });
  });
});
