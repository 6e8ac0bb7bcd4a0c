// Fuzzing the WASI shim's argument handling (issue 17): a real plugin (assembled by wabt) that imports every
// wasi_snapshot_preview1 function and hands each the arguments of its input, loaded by a PluginHost in mode none
// with a data directory (preopen fd 3). Sequences of calls with arbitrary descriptors, pointers (in, at the end
// of and past its memory, at the paths and iovecs it holds), lengths, flags, rights, offsets and timestamps: each
// answers a WASI errno, or ends the call with a coded error that names the plugin's fault (a pointer outside its
// memory: wasm_out_of_bounds; proc_exit: plugin_error), never a host exception.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { isCode } from '../../src/codes.js';
import { ReedError } from '../../src/errors.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { WASI_SIGNATURES } from '../../src/runtime/wasm/wasi-signatures.js';
import { fuzz } from '../helpers/fuzz.js';
import { startHost } from '../helpers/host.js';
import { lastingDir, writePlugin } from '../helpers/plugin-tree.js';

/** poll_oneoff's clock subscriptions sleep (up to 5 s each): left to the hostile tests, not generated here. */
const NAMES = Object.keys(WASI_SIGNATURES).filter((name) => name !== 'poll_oneoff');
const MEMORY_BYTES = 2 * 65_536;
const ARGS = 60_000;
const OUT = 60_100;
// Data the pointers aim at: paths, and iovecs {buf, len} over a buffer.
const PATHS = { a: 1000, 'd/e': 1010, '../up': 1020, '/abs': 1030, '.': 1040, 'a/../../x': 1050 };
const IOVECS = 2000; // two iovecs: {3000, 64}, {3100, 4096}

function pluginWat(): string {
  const imports = NAMES.map((name) => {
    const sig = WASI_SIGNATURES[name] as { params: string[]; results: string[] };
    const result = sig.results.length === 0 ? '' : ' (result i32)';
    return `(import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${sig.params.join(' ')})${result}))`;
  });
  const exports = NAMES.map((name) => {
    const sig = WASI_SIGNATURES[name] as { params: string[]; results: string[] };
    const args = sig.params.map((t, i) => `(${t}.load (i32.const ${ARGS + 8 * i}))`).join(' ');
    const call = `(call $${name} ${args})`;
    const body =
      sig.results.length === 0
        ? `${call} (i32.store (i32.const ${OUT}) (i32.const 0))`
        : `(i32.store (i32.const ${OUT}) ${call})`;
    return `(func (export "w_${name}") (result i32)
      (drop (call $input_read (i32.const ${ARGS}) (i32.const 72) (i32.const 0)))
      ${body}
      (drop (call $output_write (i32.const ${OUT}) (i32.const 4)))
      (i32.const 0))`;
  });
  const data = Object.entries(PATHS).map(([path, at]) => `(data (i32.const ${at}) "${path}\\00")`);
  return `(module
  (import "reed" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "reed" "output_write" (func $output_write (param i32 i32) (result i32)))
  ${imports.join('\n  ')}
  (memory (export "memory") 2 2)
  ${data.join('\n  ')}
  (data (i32.const ${IOVECS}) "\\b8\\0b\\00\\00\\40\\00\\00\\00\\1c\\0c\\00\\00\\00\\10\\00\\00")
  ${exports.join('\n  ')})`;
}

let host: PluginHost;
beforeAll(async () => {
  const wabt = await wabtFactory();
  const m = wabt.parseWat('wasi-fuzz.wat', pluginWat(), {});
  const wasm = Buffer.from(m.toBinary({}).buffer);
  m.destroy();
  const plugins = lastingDir('reed-fuzz-wasi-');
  writePlugin(
    plugins,
    'fuzz.wasi',
    {
      id: 'fuzz.wasi',
      permissions: { filesystem: 'readwrite' },
      limits: { fuel_per_call: 10_000_000 },
    },
    { 'plugin.wasm': wasm },
  );
  ({ host } = await startHost([plugins], {
    plugins: ['fuzz.wasi'],
    mode: 'none',
    reedToml: '[signatures]\nrequire = "none"\n[policy.permissions]\nfilesystem = "readwrite"\n',
  }));
});
afterAll(async () => {
  await host?.close();
});

const pointer = fc.oneof(
  fc.constantFrom(
    0,
    1,
    3,
    4,
    IOVECS,
    3000,
    MEMORY_BYTES - 8,
    MEMORY_BYTES - 1,
    MEMORY_BYTES,
    0x7fffffff,
    0xffffffff,
  ),
  fc.constantFrom(...Object.values(PATHS)),
  fc.nat({ max: MEMORY_BYTES + 16 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
);
const small = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constantFrom(16, 64, 255, 4096, 65_536));
const i32 = fc.oneof(pointer, small);
const i64 = fc.oneof(
  fc.bigInt({ min: 0n, max: 4096n }),
  fc.constantFrom(0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 0x1fffffffn, 2n ** 32n),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);

const call = fc.constantFrom(...NAMES).chain((name) => {
  const sig = WASI_SIGNATURES[name] as { params: string[] };
  return fc
    .tuple(...(sig.params.map((t) => (t === 'i64' ? i64 : i32)) as fc.Arbitrary<number | bigint>[]))
    .map((args) => ({ name, args }));
});

function input(args: (number | bigint)[]): Buffer {
  const b = Buffer.alloc(72);
  args.forEach((a, i) => {
    if (typeof a === 'bigint') b.writeBigInt64LE(a, 8 * i);
    else b.writeInt32LE(a | 0, 8 * i);
  });
  return b;
}

/** A pointer outside the plugin's memory, as the shim's bounds checks and V8's typed arrays word it. */
const OUT_OF_BOUNDS = /out of bounds|outside the bounds|Offset is outside|Invalid typed array length/i;

describe('the WASI shim', () => {
  it('answers arbitrary arguments with an errno, or a coded fault of the plugin, never a host exception', async () => {
    await fuzz(
      'wasi: arbitrary arguments into a real instance (mode none)',
      300,
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 5 }), async (calls) => {
        for (const { name, args } of calls) {
          const what = `${name}(${args.join(', ')})`;
          const outcome = await host.call('fuzz.wasi', `w_${name}`, input(args)).then(
            (o) => o.output,
            (error: unknown) => error,
          );
          if (outcome instanceof Uint8Array) {
            expect(outcome.length, what).toBe(4);
            expect(Buffer.from(outcome).readUInt32LE(0), what).toBeLessThanOrEqual(76); // preview1's errnos
            continue;
          }
          expect(outcome, what).toBeInstanceOf(ReedError);
          const e = outcome as ReedError;
          expect(isCode(e.code)).toBe(true);
          const cause = String((e.cause as Error | undefined)?.message ?? '');
          if (e.code === 'wasm_out_of_bounds') expect(cause, what).toMatch(OUT_OF_BOUNDS);
          // proc_exit, and proc_raise of a signal whose default action ends a process: the call ends (WasiExit).
          else if (e.code === 'plugin_error') expect(['proc_exit', 'proc_raise'], what).toContain(name);
          else expect.fail(`${what}: ${e.code}: ${e.message}`);
        }
      }),
    );
  });
});
