import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { main } from '../../src/cli/main.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import {
  EXTISM_FUEL_PER_CALL,
  FUEL_PER_ERROR_BYTE,
  FUEL_PER_KEPT_BYTE,
  importFuel,
} from '../../src/runtime/wasm/abi.js';
import { EXTISM_MODULE } from '../../src/runtime/wasm/extism.js';
import { FUEL_PER_INSTANCE, FUEL_PER_MEMORY } from '../../src/runtime/wasm/instantiation-fuel.js';
import { EXTISM_FIXTURES, extismPlugin } from '../helpers/extism.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { lastingDir, tempDir, writePlugin } from '../helpers/plugin-tree.js';

// Hostile Extism plugins: what our kernel (src/runtime/wasm/extism-kernel.ts, extism-arena.ts) must refuse, each
// with its code, after which the host serves the same plugin again; what it answers as Extism's kernel does
// (loads and stores outside the arena, past blocks, past the input), and that the arena holds nothing but the
// plugin's own blocks of the current call. And the modules load must refuse, refused alike by `reed-plugins
// validate`.

const wabt = await wabtFactory();
const wat = (source: string): Buffer => {
  const m = wabt.parseWat('hostile.wat', source, { exceptions: true });
  try {
    return Buffer.from(m.toBinary({}).buffer);
  } finally {
    m.destroy();
  }
};

const ENV = (name: string, params: string, results = '') =>
  `(import "extism:host/env" "${name}" (func $${name} ${params === '' ? '' : `(param ${params})`} ${results === '' ? '' : `(result ${results})`}))`;

/** One function per attack; `ok` answers "ok" (the host still serves the plugin after each). */
const HOSTILE = wat(`(module
  ${ENV('alloc', 'i64', 'i64')}
  ${ENV('free', 'i64')}
  ${ENV('length', 'i64', 'i64')}
  ${ENV('load_u8', 'i64', 'i32')}
  ${ENV('load_u64', 'i64', 'i64')}
  ${ENV('store_u8', 'i64 i32')}
  ${ENV('store_u64', 'i64 i64')}
  ${ENV('input_length', '', 'i64')}
  ${ENV('input_offset', '', 'i64')}
  ${ENV('input_load_u8', 'i64', 'i32')}
  ${ENV('input_load_u64', 'i64', 'i64')}
  ${ENV('output_set', 'i64 i64')}
  ${ENV('error_set', 'i64')}
  ${ENV('error_get', '', 'i64')}
  ${ENV('var_get', 'i64', 'i64')}
  ${ENV('var_set', 'i64 i64')}
  ${ENV('config_get', 'i64', 'i64')}
  ${ENV('log_trace', 'i64')}
  ${ENV('log_info', 'i64')}
  ${ENV('memory_bytes', '', 'i64')}
  ${ENV('reset', '')}
  (memory (export "memory") 1)
  (global $n (mut i64) (i64.const 0))
  ;; A block holding "ok", set as the output.
  (func $ok (export "ok") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 2)))
    (call $store_u8 (local.get $h) (i32.const 111))
    (call $store_u8 (i64.add (local.get $h) (i64.const 1)) (i32.const 107))
    (call $output_set (local.get $h) (i64.const 2))
    (i32.const 0))
  ;; Answers two u64s in a new block: a and b.
  (func $answer (param $a i64) (param $b i64) (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 16)))
    (call $store_u64 (local.get $h) (local.get $a))
    (call $store_u64 (i64.add (local.get $h) (i64.const 8)) (local.get $b))
    (call $output_set (local.get $h) (i64.const 16))
    (i32.const 0))
  ;; The arena's end: memory_bytes counts from offset 8.
  (func $end (result i64) (i64.add (call $memory_bytes) (i64.const 8)))
  ;; Stores outside the arena (below 8, negative, wild, straddling or just past its end), then loads there:
  ;; answers the loads ORed (0: stores did nothing, loads answered 0) and how much memory_bytes grew (0).
  (func (export "outside") (result i32) (local $size i64)
    (local.set $size (call $memory_bytes))
    (call $store_u64 (i64.const 0) (i64.const -1))
    (call $store_u8 (i64.const 7) (i32.const 255))
    (call $store_u8 (i64.const -8) (i32.const 255))
    (call $store_u64 (i64.const 0x7fffffffffffffff) (i64.const -1))
    (call $store_u64 (i64.sub (call $end) (i64.const 4)) (i64.const -1))
    (call $store_u8 (call $end) (i32.const 255))
    (call $answer
      (i64.or (i64.or (i64.or (call $load_u64 (i64.const 0)) (i64.extend_i32_u (call $load_u8 (i64.const 7))))
        (i64.or (i64.extend_i32_u (call $load_u8 (i64.const -8))) (call $load_u64 (i64.const 0x7fffffffffffffff))))
        (i64.or (call $load_u64 (i64.sub (call $end) (i64.const 4))) (i64.extend_i32_u (call $load_u8 (call $end)))))
      (i64.sub (call $memory_bytes) (local.get $size))))
  ;; Loads and stores inside the arena but past a block, in a freed block and far past the last block: answers
  ;; what was stored past the block (read back across its end) and, byte by byte, what the other two read back.
  (func (export "inside") (result i32) (local $h i64) (local $g i64)
    (local.set $h (call $alloc (i64.const 10)))
    (local.set $g (call $alloc (i64.const 10)))
    (call $store_u64 (i64.add (local.get $h) (i64.const 5)) (i64.const 0x0807060504030201))
    (call $free (local.get $g))
    (call $store_u8 (local.get $g) (i32.const 7))
    (call $store_u8 (i64.sub (call $end) (i64.const 1)) (i32.const 9))
    (call $answer
      (call $load_u64 (i64.add (local.get $h) (i64.const 5)))
      (i64.or (i64.extend_i32_u (call $load_u8 (local.get $g)))
        (i64.shl (i64.extend_i32_u (call $load_u8 (i64.sub (call $end) (i64.const 1)))) (i64.const 8)))))
  ;; Past the input's end: input_load_u64 of its last 4 bytes and input_load_u8 at its length and at -1 (0, ORed),
  ;; and input_load_u64 of its last 8 bytes.
  (func (export "input_past_end") (result i32)
    (call $answer
      (i64.or (call $input_load_u64 (i64.sub (call $input_length) (i64.const 4)))
        (i64.extend_i32_u (i32.or (call $input_load_u8 (call $input_length)) (call $input_load_u8 (i64.const -1)))))
      (call $input_load_u64 (i64.sub (call $input_length) (i64.const 8)))))
  ;; The output: 11 bytes of a 10-byte block ("0123456789" and the byte past it).
  (func (export "output_past_block") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 10)))
    (call $store_u64 (local.get $h) (i64.const 0x3736353433323130))
    (call $store_u8 (i64.add (local.get $h) (i64.const 8)) (i32.const 56))
    (call $store_u8 (i64.add (local.get $h) (i64.const 9)) (i32.const 57))
    (call $output_set (local.get $h) (i64.const 11)) (i32.const 0))
  ;; "ok", then outputs outside the arena, each ignored: (0, 0), wild, straddling its end, negative length.
  (func (export "output_outside") (result i32) (local $h i64)
    (drop (call $ok))
    (call $output_set (i64.const 0) (i64.const 0))
    (call $output_set (i64.const 0x7fffffffffffffff) (i64.const 8))
    (call $output_set (i64.sub (call $end) (i64.const 2)) (i64.const 4))
    (local.set $h (call $alloc (i64.const 8)))
    (call $output_set (local.get $h) (i64.const -1))
    (i32.const 0))
  ;; "ok" with an error_set outside the arena (ignored), then error_get: answers "ok" or "error_get is not 0".
  (func (export "error_outside") (result i32)
    (call $error_set (i64.const 0x7fffffffffffffff))
    (if (i64.ne (call $error_get) (i64.const 0)) (then unreachable))
    (call $ok))
  ;; error_set at an offset inside the arena that is no block, returning 0: the call fails all the same.
  (func (export "error_not_a_block") (result i32)
    (call $error_set (i64.const 12345))
    (if (i64.ne (call $error_get) (i64.const 12345)) (then unreachable))
    (i32.const 0))
  ;; The error's block freed before returning 0: the call fails, with no message.
  (func (export "error_freed") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $h) (i64.const 0x6567617373656d21))
    (call $error_set (local.get $h))
    (call $free (local.get $h))
    (i32.const 0))
  ;; Writes all over the arena (every u64 of it), takes the input as a block, and sets a variable: a later call must
  ;; find none of it in the arena.
  (func (export "smear") (result i32) (local $p i64) (local $k i64)
    (drop (call $input_offset))
    (local.set $k (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $k) (i32.const 118))
    (call $var_set (local.get $k) (call $input_offset))
    (local.set $p (i64.const 8))
    (loop $l
      (call $store_u64 (local.get $p) (i64.const -1))
      (br_if $l (i64.lt_u (local.tee $p (i64.add (local.get $p) (i64.const 8))) (i64.sub (call $end) (i64.const 7)))))
    ;; A block handed out over what was written starts zeroed.
    (call $output_set (call $alloc (i64.const 16)) (i64.const 16))
    (i32.const 0))
  ;; Every u64 of the arena ORed, and memory_bytes.
  (func (export "scan") (result i32) (local $p i64) (local $acc i64)
    (local.set $p (i64.const 8))
    (loop $l
      (local.set $acc (i64.or (local.get $acc) (call $load_u64 (local.get $p))))
      (br_if $l (i64.lt_u (local.tee $p (i64.add (local.get $p) (i64.const 8))) (i64.sub (call $end) (i64.const 7)))))
    (call $answer (local.get $acc) (call $memory_bytes)))
  ;; Variable "v" set to the input, then a trap: the variable stays, as in Extism.
  (func (export "var_then_trap") (result i32) (local $k i64)
    (local.set $k (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $k) (i32.const 118))
    (call $var_set (local.get $k) (call $input_offset))
    unreachable)
  ;; Variable "v" as the output.
  (func (export "var_read") (result i32) (local $k i64) (local $v i64)
    (local.set $k (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $k) (i32.const 118))
    (local.set $v (call $var_get (local.get $k)))
    (call $output_set (local.get $v) (call $length (local.get $v)))
    (i32.const 0))
  ;; A log line at trace (below the host's level: dropped unread) from what is not a block, then "ok".
  (func (export "log_below_level_not_a_block") (result i32) (call $log_trace (i64.const 99)) (call $ok))
  (func (export "log_not_a_block") (result i32) (call $log_info (i64.const 99)) (i32.const 0))
  (func (export "huge_alloc") (result i32) (drop (call $alloc (i64.const 0x10000000000))) (i32.const 0))
  (func (export "negative_alloc") (result i32) (drop (call $alloc (i64.const -1))) (i32.const 0))
  (func (export "alloc_loop") (result i32) (loop $l (drop (call $alloc (i64.const 65536))) (br $l)) (i32.const 0))
  (func (export "tiny_alloc_loop") (result i32) (loop $l (drop (call $alloc (i64.const 1))) (br $l)) (i32.const 0))
  ;; Loads alone (imports that do the guard's work themselves: SELF_GUARDED), then the same swallowing every error.
  (func (export "load_loop") (result i32) (loop $l (drop (call $load_u64 (i64.const 8))) (br $l)) (i32.const 0))
  (func (export "load_loop_catch_all") (result i32)
    (loop $l (try (do (drop (call $load_u64 (i64.const 8)))) (catch_all)) (br $l)) (i32.const 0))
  (func (export "alloc_free_loop") (result i32)
    (loop $l (call $free (call $alloc (i64.const 64))) (br $l)) (i32.const 0))
;; A variable name of 1,025 bytes, one over MAX_KEY_BYTES (a name as long as the quota made V8 compare every
  ;; stored name at each lookup: the seventh review). 1,024 is a name like any: set, then removed.
  (func (export "var_long_name_set") (result i32)
    (call $var_set (call $alloc (i64.const 1025)) (call $alloc (i64.const 1))) (i32.const 0))
  (func (export "var_long_name_get") (result i32)
    (drop (call $var_get (call $alloc (i64.const 1025)))) (i32.const 0))
  (func (export "var_name_1024") (result i32) (local $k i64)
    (local.set $k (call $alloc (i64.const 1024)))
    (call $var_set (local.get $k) (call $alloc (i64.const 1)))
    (local.set $k (call $alloc (i64.const 1024)))
    (call $var_set (local.get $k) (i64.const 0))
    (call $ok))
    ;; Variables of 256 bytes under fresh keys until the quota refuses one.
  (func (export "var_flood") (result i32) (local $k i64)
    (loop $l
      (local.set $k (call $alloc (i64.const 8)))
      (call $store_u64 (local.get $k) (global.get $n))
      (global.set $n (i64.add (global.get $n) (i64.const 1)))
      (call $var_set (local.get $k) (call $alloc (i64.const 256)))
      (br $l))
    (i32.const 0))
  (func (export "big_output") (result i32)
    (call $output_set (call $alloc (i64.const 8192)) (i64.const 8192)) (i32.const 0))
  ;; A 1 MiB message: ESC [31m ESC, 0xff (not UTF-8), A, then NUL bytes.
  (func (export "huge_error") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 1048576)))
    (call $store_u64 (local.get $h) (i64.const 0x41ff1b6d31335b1b))
    (call $error_set (local.get $h))
    (i32.const 1))
  (func (export "log_flood") (result i32) (local $i i32) (local $h i64)
    (loop $l
      (local.set $h (call $alloc (i64.const 5)))
      (call $store_u8 (local.get $h) (i32.const 102))
      (call $log_info (local.get $h))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 1000))))
    (i32.const 0))
  ;; The output's block freed before returning: its bytes are the output all the same ("freed-ok").
  (func (export "freed_output") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $h) (i64.const 0x6b6f2d6465657266))
    (call $output_set (local.get $h) (i64.const 8))
    (call $free (local.get $h)) (i32.const 0))
  ;; 100 calls of one host function each (a 1-byte key "k", made fresh: the function takes and frees it).
  (func $k (result i64) (local $h i64)
    (local.set $h (call $alloc (i64.const 1))) (call $store_u8 (local.get $h) (i32.const 107)) (local.get $h))
  (func (export "price_config_get") (result i32) (local $i i32)
    (loop $l (drop (call $config_get (call $k)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100)))) (call $reset) (i32.const 0))
  (func (export "price_var_get") (result i32) (local $i i32)
    (loop $l (drop (call $var_get (call $k)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100)))) (call $reset) (i32.const 0))
  (func (export "price_length") (result i32) (local $i i32)
    (loop $l (drop (call $length (i64.const 8)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100)))) (i32.const 0))
  ;; A variable of 2,048 bytes under a fresh key, then taken away again (the quota stays free).
  (func (export "price_var_set_big") (result i32)
    (call $var_set (call $k) (call $alloc (i64.const 2048)))
    (call $var_set (call $k) (i64.const 0)) (call $reset) (i32.const 0))
  ;; 100 error_sets of a 4,000-byte message, then none.
  (func (export "price_error_set") (result i32) (local $i i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 4000)))
    (loop $l (call $error_set (local.get $h))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100))))
    (call $error_set (i64.const 0)) (call $reset) (i32.const 0))
  (func (export "trap") (result i32) unreachable)
  (func (export "config_not_a_block") (result i32) (drop (call $config_get (i64.const 99))) (i32.const 0))
  ;; Freed twice, then reused: the reused block starts zeroed, whatever the freed one held.
  (func (export "double_free_reuse") (result i32) (local $h i64) (local $spacer i64) (local $g i64)
    (local.set $h (call $alloc (i64.const 16)))
    (local.set $spacer (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $h) (i64.const -1))
    (call $store_u64 (i64.add (local.get $h) (i64.const 8)) (i64.const -1))
    (call $free (local.get $h))
    (call $free (local.get $h))
    (local.set $g (call $alloc (i64.const 16)))
    (if (i64.ne (local.get $g) (local.get $h)) (then unreachable))
    (if (i64.ne (call $length (local.get $g)) (i64.const 16)) (then unreachable))
    (call $output_set (local.get $g) (i64.const 16))
    (i32.const 0))
)`);

const LIMITS = {
  memory_mb: 4,
  max_output_bytes: 4096,
  extism_var_bytes: 4096,
  log_lines_per_second: 20,
  // Enough for tiny_alloc_loop to reach memory_mb first: 4 MiB holds ~58k 1-byte blocks (72 bytes each counted),
  // each alloc paying EXTISM_FUEL_PER_CALL (2,048) and its bytes.
  fuel_per_call: 200_000_000,
};

const u64s = (...values: bigint[]) => {
  const bytes = Buffer.alloc(8 * values.length);
  for (const [i, v] of values.entries()) bytes.writeBigUInt64LE(BigInt.asUintN(64, v), 8 * i);
  return bytes;
};

/** The extent of an arena before any block grows it: 64 KiB, from offset 8 (extism-arena.ts). */
const ARENA_BYTES = 65_536 - 8;

/** What Extism's kernel answers where ours used to trap (fn, input, the output expected). */
const AS_EXTISM: [fn: string, input: string, output: Buffer][] = [
  ['outside', '', u64s(0n, 0n)],
  ['inside', '', u64s(0x0807060504030201n, 0x0907n)],
  ['input_past_end', 'twelve bytes', u64s(0n, Buffer.from('ve bytes').readBigUInt64LE())],
  ['output_past_block', '', Buffer.from('0123456789\0')],
  ['output_outside', '', Buffer.from('ok')],
  ['freed_output', '', Buffer.from('freed-ok')],
  ['error_outside', '', Buffer.from('ok')],
  ['log_below_level_not_a_block', '', Buffer.from('ok')],
];

const ATTACKS: [fn: string, code: string, input?: string][] = [
  ['error_not_a_block', 'plugin_error'],
  ['error_freed', 'plugin_error'],
  ['config_not_a_block', 'wasm_out_of_bounds'],
  ['log_not_a_block', 'wasm_out_of_bounds'],
  ['huge_alloc', 'extism_memory_limit'],
  ['negative_alloc', 'extism_memory_limit'],
  ['alloc_loop', 'extism_memory_limit'],
  // 1-byte blocks: each counts 8 bytes and 64 of bookkeeping, so the cap holds what the host keeps for them.
  ['tiny_alloc_loop', 'extism_memory_limit'],
  ['alloc_free_loop', 'fuel_exhausted'],
  ['load_loop', 'fuel_exhausted'],
  ['load_loop_catch_all', 'fuel_exhausted'],
  ['var_long_name_set', 'argument_too_large'],
  ['var_long_name_get', 'argument_too_large'],
  ['var_flood', 'extism_var_quota_exceeded'],
  ['big_output', 'output_too_large'],
];

describe.each(['none', 'process'] as SandboxMode[])('hostile Extism plugin, mode %s', (mode) => {
  let host: PluginHost;
  let logs: LogLine[];
  beforeAll(async () => {
    const root = lastingDir('reed-extism-hostile-');
    writePlugin(root, 'hostile', { id: 'extism.hostile', limits: LIMITS }, { 'plugin.wasm': HOSTILE });
    // The same module again, for the tests of its variables (var_flood leaves the first one's quota full).
    writePlugin(root, 'hostile2', { id: 'extism.hostile2', limits: LIMITS }, { 'plugin.wasm': HOSTILE });
    // And with fuel for 440 million loads, so that a 300 ms deadline ends a loop first. (With a tenth of that, 44
    // million, seconds of loads on Node 20, a run on Node 24 in process mode once ran out of fuel at 304 ms: the
    // fuel and the deadline raced.)
    const slow = { ...LIMITS, fuel_per_call: 50_000_000_000, call_timeout_ms: 300 };
    writePlugin(root, 'hostile3', { id: 'extism.hostile3', limits: slow }, { 'plugin.wasm': HOSTILE });
    ({ host, logs } = await startHost([root], { mode, reedToml: '[signatures]\nrequire = "none"\n' }));
    expect(host.status().map((s) => [s.id, s.state])).toEqual([
      ['extism.hostile', 'ready'],
      ['extism.hostile2', 'ready'],
      ['extism.hostile3', 'ready'],
    ]);
  }, 60_000);
  afterAll(() => host?.close());

  it.each(ATTACKS)('%s fails with %s, and the host serves the plugin again', async (fn, code, input = '') => {
    await expect(host.call('extism.hostile', fn, input)).rejects.toMatchObject({ code });
    expect(text((await host.call('extism.hostile', 'ok')).output)).toBe('ok');
  });

  it('a variable name of 1,024 bytes is one like any (set, then removed)', async () => {
    expect(text((await host.call('extism.hostile2', 'var_name_1024')).output)).toBe('ok');
  });

  it.each(AS_EXTISM)(
    "%s answers as Extism's kernel does (a load outside is 0, a store outside nothing)",
    async (fn, input, output) => {
      expect(Buffer.from((await host.call('extism.hostile', fn, input)).output)).toEqual(output);
    },
  );

  // Before, each paid FUEL_PER_HOST_CALL (100): a config_get ran at 150x plain instructions' CPU per fuel.
  it.each([
    ['price_config_get', 'config_get'],
    ['price_var_get', 'var_get'],
    ['price_length', 'length'],
  ])('%s: each of 100 calls of %s pays its price (importFuel)', async (fn, name) => {
    const price = importFuel(EXTISM_MODULE, name, 0);
    expect(price).toBeGreaterThanOrEqual(EXTISM_FUEL_PER_CALL);
    const { stats } = await host.call('extism.hostile', fn);
    expect(stats.fuelConsumed).toBeGreaterThanOrEqual(100 * price);
    // The key blocks' allocs (and their bytes) are most of the rest.
    expect(stats.fuelConsumed).toBeLessThan(100 * (price + 2 * EXTISM_FUEL_PER_CALL + 1_000) + 20_000);
  });

  // A third review: a 32 MiB value cost 42 ms a var_set for 1 fuel a byte; a loop of error_sets of 4 KiB ran at
  // 17-20x plain instructions' CPU per fuel; an Extism plugin's kernel (a memory, an instance) was made again after a
  // trap for nothing.
  it('var_set pays for the bytes it keeps, error_set for the message it will decode', async () => {
    // (hostile3: var_flood filled the first one's variables, their own tests the second's.)
    const varSet = await host.call('extism.hostile3', 'price_var_set_big');
    expect(varSet.stats.fuelConsumed).toBeGreaterThanOrEqual(2048 * FUEL_PER_KEPT_BYTE);
    const errorSet = await host.call('extism.hostile', 'price_error_set');
    expect(errorSet.stats.fuelConsumed).toBeGreaterThanOrEqual(100 * 4000 * FUEL_PER_ERROR_BYTE);
  });

  it("after a trap, the call that makes the instance again pays for its kernel's memory and instance too", async () => {
    await host.call('extism.hostile', 'ok'); // the instance is made (an earlier test may have failed a call)
    const steady = (await host.call('extism.hostile', 'ok')).stats.fuelConsumed;
    await expect(host.call('extism.hostile', 'trap')).rejects.toMatchObject({ code: 'wasm_trap' });
    const after = (await host.call('extism.hostile', 'ok')).stats.fuelConsumed;
    expect(after - steady).toBeGreaterThanOrEqual(FUEL_PER_MEMORY + FUEL_PER_INSTANCE);
  });

  it('a loop of loads swallowing every error (catch_all) still ends at the deadline with call_timeout', async () => {
    // Loads do the guard's work themselves (SELF_GUARDED): the deadline they find is raised as a trap no catch_all
    // catches, as the generic guard's is. Were it swallowed, the loop would run on to its fuel (fuel_exhausted).
    await expect(host.call('extism.hostile3', 'load_loop_catch_all')).rejects.toMatchObject({
      code: 'call_timeout',
    });
    expect(text((await host.call('extism.hostile3', 'ok')).output)).toBe('ok');
  });

  it('error_set of what is no longer a block fails the call all the same, saying there is no message', async () => {
    await expect(host.call('extism.hostile', 'error_freed')).rejects.toMatchObject({
      code: 'plugin_error',
      message: expect.stringMatching(
        /error_set named offset \d+, not a memory block when the function returned/,
      ),
    });
  });

  it("the arena holds only the current call's blocks: all zeros again after a call that wrote all over it", async () => {
    // smear writes -1 over every u64 of the arena, copies its input into it and sets a variable from it; a block
    // it then allocates over that comes back zeroed.
    const { output } = await host.call('extism.hostile2', 'smear', 'secret input of another caller');
    expect([...output]).toEqual(new Array(16).fill(0));
    // The next call, in the same instance, reads every u64 of the arena: all zero, and it is no larger.
    expect(Buffer.from((await host.call('extism.hostile2', 'scan')).output)).toEqual(
      u64s(0n, BigInt(ARENA_BYTES)),
    );
  });

  it('a variable set before a trap is kept: the instance is dropped, the variables are not (as in Extism)', async () => {
    await expect(host.call('extism.hostile2', 'var_then_trap', 'kept')).rejects.toMatchObject({
      code: 'wasm_trap',
    });
    expect(text((await host.call('extism.hostile2', 'var_read')).output)).toBe('kept');
  });

  it('error_set with a huge message: plugin_error, cut to 4 KiB of it, escaped, invalid UTF-8 replaced', async () => {
    const error = await host.call('extism.hostile', 'huge_error').catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'plugin_error', details: { status: 1 } });
    const { message } = error as Error;
    // (A runner's error frame cuts it further, to 8 KiB: protocol/frames.ts MAX_ERROR_MESSAGE.)
    expect(message).toMatch(/^plugin "extism.hostile": \\u001b\[31m\\u001b\uFFFDA(\\u0000)+/);
    expect(message.length).toBeLessThan(4096 * 6 + 100);
    expect([...message].some((c) => c.charCodeAt(0) < 0x20)).toBe(false);
  });

  it('a log flood is cut at limits.log_lines_per_second', async () => {
    const before = logs.filter((l) => l.pluginId === 'extism.hostile' && l.msg.startsWith('f')).length;
    await host.call('extism.hostile', 'log_flood');
    await host.call('extism.hostile', 'ok');
    const lines =
      logs.filter((l) => l.pluginId === 'extism.hostile' && l.msg.startsWith('f')).length - before;
    expect(lines).toBeGreaterThan(0);
    expect(lines).toBeLessThanOrEqual(LIMITS.log_lines_per_second);
  });

  it('a block freed twice is harmless, and comes back zeroed', async () => {
    const { output } = await host.call('extism.hostile', 'double_free_reuse');
    expect([...output]).toEqual(new Array(16).fill(0));
  });
});

// --- modules load refuses, and validate alike -----------------------------------------------------------

const OK = '(memory (export "memory") 1) (func (export "ok") (result i32) (i32.const 0))';
const REFUSED: [name: string, module: Buffer, code: string, abi?: string][] = [
  [
    "Extism's own code-functions.wasm (imports extism:host/user)",
    Buffer.from(''),
    'extism_host_functions_unsupported',
  ],
  [
    'an Extism function and an env function',
    wat(`(module ${ENV('alloc', 'i64', 'i64')} (import "env" "log" (func (param i32 i32 i32))) ${OK})`),
    'wasm_abi_mixed',
  ],
  [
    'an Extism function and a reed function',
    wat(`(module ${ENV('alloc', 'i64', 'i64')} (import "reed" "input_len" (func (result i32))) ${OK})`),
    'wasm_abi_mixed',
  ],
  [
    'an Extism function with the wrong signature',
    wat(`(module (import "extism:host/env" "alloc" (func (param i32) (result i32))) ${OK})`),
    'wasm_import_signature',
  ],
  [
    'an Extism kernel export that is not part of the ABI (input_set)',
    wat(`(module ${ENV('input_set', 'i64 i64')} ${OK})`),
    'wasm_import_unknown',
  ],
  [
    "Extism's memory",
    wat(
      `(module (import "extism:host/env" "memory" (memory 1)) (func (export "ok") (result i32) (i32.const 0)))`,
    ),
    'wasm_import_unknown',
  ],
  [
    'abi = "reed" for an Extism module',
    wat(`(module ${ENV('alloc', 'i64', 'i64')} ${OK})`),
    'wasm_abi_mismatch',
    'reed',
  ],
  [
    'abi = "extism" for a module of our ABI',
    wat(`(module (import "reed" "input_len" (func (result i32))) ${OK})`),
    'wasm_abi_mismatch',
    'extism',
  ],
];

function pluginWith(module: Buffer, abi?: string): string {
  const root = tempDir('reed-extism-refused-');
  if (module.length === 0) {
    extismPlugin(root, 'p', join(EXTISM_FIXTURES, 'code-functions.wasm'), { id: 'case.p' });
  } else {
    writePlugin(
      root,
      'p',
      { id: 'case.p', ...(abi === undefined ? {} : { abi }) },
      { 'plugin.wasm': module },
    );
  }
  return root;
}

async function validate(root: string): Promise<string[]> {
  const out: string[] = [];
  const status = await main(['validate', join(root, 'p'), '--no-default-paths', '--json'], {
    stdout: (s: string) => void out.push(s),
    stdoutBytes: () => {},
    stderr: () => {},
    cwd: process.cwd(),
    env: {},
  });
  const json = JSON.parse(out.join('')) as {
    plugins: { diagnostics: { code: string; severity: string }[] }[];
  };
  const codes = (json.plugins[0]?.diagnostics ?? []).filter((d) => d.severity === 'error').map((d) => d.code);
  expect(status).toBe(codes.length === 0 ? 0 : 1);
  return codes;
}

const hosts: PluginHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.close();
});

describe.each(REFUSED)('%s', (_name, module, code, abi) => {
  it(`validate: ${code}`, async () => {
    expect(await validate(pluginWith(module, abi))).toEqual([code]);
  });

  it(`load: ${code}`, async () => {
    const { host } = await startHost([pluginWith(module, abi)]);
    hosts.push(host);
    expect(host.status()[0]).toMatchObject({ id: 'case.p', state: 'failed', error: { code } });
  });
});

describe('an Extism module saying abi = "extism"', () => {
  it('is valid and loads', async () => {
    const root = pluginWith(wat(`(module ${ENV('alloc', 'i64', 'i64')} ${OK})`), 'extism');
    expect(await validate(root)).toEqual([]);
    const { host } = await startHost([root]);
    hosts.push(host);
    expect(host.status()[0]).toMatchObject({ id: 'case.p', state: 'ready' });
  });
});

describe("an Extism plugin's functions", () => {
  it('are its () -> i32 exports not starting with _; _initialize runs once per instance, _start never', async () => {
    const root = tempDir('reed-extism-functions-');
    const module = wat(`(module
      ${ENV('alloc', 'i64', 'i64')}
      ${ENV('store_u8', 'i64 i32')}
      ${ENV('output_set', 'i64 i64')}
      (memory (export "memory") 1)
      (global $initialized (mut i32) (i32.const 0))
      (global $started (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $initialized (i32.add (global.get $initialized) (i32.const 1))))
      (func (export "_start") (global.set $started (i32.const 1)))
      ;; Answers two digits: how often _initialize ran, and whether _start did.
      (func (export "state") (result i32) (local $h i64)
        (local.set $h (call $alloc (i64.const 2)))
        (call $store_u8 (local.get $h) (i32.add (i32.const 48) (global.get $initialized)))
        (call $store_u8 (i64.add (local.get $h) (i64.const 1)) (i32.add (i32.const 48) (global.get $started)))
        (call $output_set (local.get $h) (i64.const 2))
        (i32.const 0))
      (func (export "init") (result i32) (i32.const 7))
      (func (export "deactivate") (result i32) (i32.const 0))
      (func (export "_private") (result i32) (i32.const 0))
      (func (export "takes_one") (param i32) (result i32) (i32.const 0)))`);
    writePlugin(root, 'p', { id: 'case.p' }, { 'plugin.wasm': module });
    const { host } = await startHost([root]);
    hosts.push(host);
    // init is not a hook here (it returns 7: as a hook it would fail the load); it is a function like any other.
    expect(host.status()[0]).toMatchObject({ id: 'case.p', state: 'ready' });
    expect(text((await host.call('case.p', 'state')).output)).toBe('10');
    expect(text((await host.call('case.p', 'state')).output)).toBe('10');
    await expect(host.call('case.p', 'init')).rejects.toMatchObject({
      code: 'plugin_error',
      details: { status: 7 },
    });
    for (const fn of ['_start', '_initialize', '_private', 'takes_one']) {
      await expect(host.call('case.p', fn)).rejects.toMatchObject({
        code: 'function_not_found',
        message: expect.stringContaining('it has: state, init, deactivate'),
      });
    }
  });
});
