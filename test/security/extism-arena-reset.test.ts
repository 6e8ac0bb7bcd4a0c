// The Extism arena is zeroed when a call ends (every byte written since the last reset: extism-arena.ts), and that
// work must be paid for like every other: found by the adversarial pass H10, a plugin that had grown the arena once
// made each later call zero all of it (8 MiB here; memory_mb at most) for one store_u8 at its far end, charged one
// byte. A store past what was written since the reset is now charged the bytes up to it, before it is made.
import { afterAll, beforeAll, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { startHost } from '../helpers/host.js';
import { lastingDir, writePlugin } from '../helpers/plugin-tree.js';

const wabt = await wabtFactory();
const m = wabt.parseWat(
  'arena.wat',
  `(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "memory_bytes" (func $memory_bytes (result i64)))
  (memory (export "memory") 1)
  ;; One block of 4 MiB: the arena's extent grows to hold it, and stays (a reset zeroes, it does not shrink).
  (func (export "grow") (result i32) (drop (call $alloc (i64.const 4194304))) (i32.const 0))
  ;; One byte at the extent's last offset, one at its first.
  (func (export "far") (result i32)
    (call $store_u8 (i64.add (i64.const 7) (call $memory_bytes)) (i32.const 1)) (i32.const 0))
  (func (export "near") (result i32) (call $store_u8 (i64.const 8) (i32.const 1)) (i32.const 0))
  (func (export "extent") (result i32) (i32.wrap_i64 (call $memory_bytes)))
)`,
);
const MODULE = Buffer.from(m.toBinary({}).buffer);
m.destroy();

let host: PluginHost;
beforeAll(async () => {
  const root = lastingDir('reed-extism-arena-');
  writePlugin(root, 'arena', { id: 'extism.arena' }, { 'plugin.wasm': MODULE });
  ({ host } = await startHost([root], { reedToml: '[signatures]\nrequire = "none"\n' }));
});
afterAll(() => host?.close());

it('a store far into a grown arena pays for the zeroing it causes when the call ends', async () => {
  await host.call('extism.arena', 'grow', '');
  const fuel = async (fn: string) => (await host.call('extism.arena', fn, '')).stats.fuelConsumed;
  const near = await fuel('near');
  const far = await fuel('far');
  const extent = 8 * 1024 * 1024; // the 4 MiB block's end, doubled from 64 KiB
  expect(far - near).toBeGreaterThanOrEqual(extent - 8);
});
