import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { main } from '../../src/cli/main.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { EXTISM_FIXTURES, extismPlugin } from '../helpers/extism.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { lastingDir, tempDir, writePlugin } from '../helpers/plugin-tree.js';

// Hostile Extism plugins: what our kernel (src/runtime/wasm/extism-kernel.ts, extism-arena.ts) must refuse, each
// with its code, after which the host serves the same plugin again. And the modules load must refuse, refused
// alike by `reed-plugins validate`.

const wabt = await wabtFactory();
const wat = (source: string): Buffer => {
  const m = wabt.parseWat('hostile.wat', source);
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
  ${ENV('input_load_u64', 'i64', 'i64')}
  ${ENV('output_set', 'i64 i64')}
  ${ENV('error_set', 'i64')}
  ${ENV('var_set', 'i64 i64')}
  ${ENV('config_get', 'i64', 'i64')}
  ${ENV('log_info', 'i64')}
  (memory (export "memory") 1)
  (global $n (mut i64) (i64.const 0))
  ;; A block holding "ok", set as the output.
  (func (export "ok") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 2)))
    (call $store_u8 (local.get $h) (i32.const 111))
    (call $store_u8 (i64.add (local.get $h) (i64.const 1)) (i32.const 107))
    (call $output_set (local.get $h) (i64.const 2))
    (i32.const 0))
  (func (export "load_zero") (result i32) (drop (call $load_u8 (i64.const 0))) (i32.const 0))
  (func (export "store_zero") (result i32) (call $store_u64 (i64.const 0) (i64.const -1)) (i32.const 0))
  (func (export "load_wild") (result i32) (drop (call $load_u64 (i64.const 0x7fffffffffffffff))) (i32.const 0))
  (func (export "load_negative") (result i32) (drop (call $load_u8 (i64.const -8))) (i32.const 0))
  (func (export "load_past_block") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 10)))
    (drop (call $load_u64 (i64.add (local.get $h) (i64.const 5)))) (i32.const 0))
  (func (export "store_past_block") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 10)))
    (drop (call $alloc (i64.const 10)))
    (call $store_u8 (i64.add (local.get $h) (i64.const 10)) (i32.const 1)) (i32.const 0))
  (func (export "output_past_block") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 10)))
    (call $output_set (local.get $h) (i64.const 11)) (i32.const 0))
  (func (export "input_past_end") (result i32)
    (drop (call $input_load_u64 (i64.sub (call $input_length) (i64.const 4)))) (i32.const 0))
  (func (export "huge_alloc") (result i32) (drop (call $alloc (i64.const 0x10000000000))) (i32.const 0))
  (func (export "negative_alloc") (result i32) (drop (call $alloc (i64.const -1))) (i32.const 0))
  (func (export "alloc_loop") (result i32) (loop $l (drop (call $alloc (i64.const 65536))) (br $l)) (i32.const 0))
  (func (export "tiny_alloc_loop") (result i32) (loop $l (drop (call $alloc (i64.const 1))) (br $l)) (i32.const 0))
  (func (export "alloc_free_loop") (result i32)
    (loop $l (call $free (call $alloc (i64.const 64))) (br $l)) (i32.const 0))
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
  (func (export "use_after_free") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 16)))
    (call $free (local.get $h))
    (drop (call $load_u8 (local.get $h))) (i32.const 0))
  (func (export "freed_output") (result i32) (local $h i64)
    (local.set $h (call $alloc (i64.const 8)))
    (call $output_set (local.get $h) (i64.const 8))
    (call $free (local.get $h)) (i32.const 0))
  (func (export "error_not_a_block") (result i32) (call $error_set (i64.const 12345)) (i32.const 1))
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
  fuel_per_call: 20_000_000,
};

const ATTACKS: [fn: string, code: string, input?: string][] = [
  ['load_zero', 'wasm_out_of_bounds'],
  ['store_zero', 'wasm_out_of_bounds'],
  ['load_wild', 'wasm_out_of_bounds'],
  ['load_negative', 'wasm_out_of_bounds'],
  ['load_past_block', 'wasm_out_of_bounds'],
  ['store_past_block', 'wasm_out_of_bounds'],
  ['output_past_block', 'wasm_out_of_bounds'],
  ['input_past_end', 'wasm_out_of_bounds', 'twelve bytes'],
  ['use_after_free', 'wasm_out_of_bounds'],
  ['freed_output', 'wasm_out_of_bounds'],
  ['error_not_a_block', 'wasm_out_of_bounds'],
  ['config_not_a_block', 'wasm_out_of_bounds'],
  ['huge_alloc', 'extism_memory_limit'],
  ['negative_alloc', 'extism_memory_limit'],
  ['alloc_loop', 'extism_memory_limit'],
  // 1-byte blocks: each counts 8 bytes and 64 of bookkeeping, so the cap holds what the host keeps for them.
  ['tiny_alloc_loop', 'extism_memory_limit'],
  ['alloc_free_loop', 'fuel_exhausted'],
  ['var_flood', 'extism_var_quota_exceeded'],
  ['big_output', 'output_too_large'],
];

describe.each(['none', 'process'] as SandboxMode[])('hostile Extism plugin, mode %s', (mode) => {
  let host: PluginHost;
  let logs: LogLine[];
  beforeAll(async () => {
    const root = lastingDir('reed-extism-hostile-');
    writePlugin(root, 'hostile', { id: 'extism.hostile', limits: LIMITS }, { 'plugin.wasm': HOSTILE });
    ({ host, logs } = await startHost([root], { mode, reedToml: '[signatures]\nrequire = "none"\n' }));
    expect(host.status()[0]).toMatchObject({ id: 'extism.hostile', state: 'ready' });
  }, 60_000);
  afterAll(() => host?.close());

  it.each(ATTACKS)('%s fails with %s, and the host serves the plugin again', async (fn, code, input = '') => {
    await expect(host.call('extism.hostile', fn, input)).rejects.toMatchObject({ code });
    expect(text((await host.call('extism.hostile', 'ok')).output)).toBe('ok');
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
