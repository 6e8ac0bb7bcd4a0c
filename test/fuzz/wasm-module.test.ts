// Fuzzing the WASM module checks and the fuel instrumenter (issue 17). Valid modules are generated as programs
// (arithmetic, blocks, branches, bounded loops, calls, loads and stores, globals, memory.fill/copy/grow) and
// assembled with wabt: the instrumented module validates, and computes what the original computes (the same
// result or a trap, the same memory and globals after) for generated arguments. Invalid modules are byte
// mutations of valid ones and arbitrary bytes after the preamble: checkModule and prepareModule answer a coded
// ReedError or accept, never anything else; what prepareModule accepts from a valid module validates.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { isCode } from '../../src/codes.js';
import { ReedError } from '../../src/errors.js';
import { checkModule } from '../../src/runtime/wasm/check-module.js';
import { DEFAULT_WASM_MODULE_LIMITS } from '../../src/runtime/wasm/module-limits.js';
import { FUEL_EXPORT, prepareModule } from '../../src/runtime/wasm/prepare-module.js';
import { fuzz, mutated } from '../helpers/fuzz.js';

let wat: (text: string) => Uint8Array;
beforeAll(async () => {
  const wabt = await wabtFactory();
  wat = (text) => {
    const m = wabt.parseWat('fuzz.wat', text, { bulk_memory: true });
    try {
      return m.toBinary({}).buffer;
    } finally {
      m.destroy();
    }
  };
});

const OPTIONS = { fuel: true, initialFuel: 1n << 40n, memoryCapPages: 64, tableCapElements: 1000 };
const POLICY = {
  maxModuleBytes: 1 << 20,
  limits: DEFAULT_WASM_MODULE_LIMITS,
  memoryCapPages: 64,
  tableCapElements: 1000,
};
const AT = { pluginId: 'p', file: 'plugin.wasm' };

const BIN = [
  'add',
  'sub',
  'mul',
  'and',
  'or',
  'xor',
  'shl',
  'shr_u',
  'shr_s',
  'rotl',
  'div_u',
  'rem_s',
  'eq',
  'lt_s',
  'ge_u',
];
const UN = ['eqz', 'clz', 'ctz', 'popcnt'];
const i32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

/** An i32 expression of depth at most `depth`: text that pushes one i32, using params 0-1, locals 2-3, global 0. */
const expr = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    i32.map((n) => `(i32.const ${n})`),
    fc.constantFrom(
      '(local.get 0)',
      '(local.get 1)',
      '(local.get 2)',
      '(local.get 3)',
      '(global.get $g)',
      '(memory.size)',
    ),
    fc.tuple(fc.constantFrom(...BIN), tie('e'), tie('e')).map(([op, a, b]) => `(i32.${op} ${a} ${b})`),
    fc.tuple(fc.constantFrom(...UN), tie('e')).map(([op, a]) => `(i32.${op} ${a})`),
    fc
      .tuple(tie('e'), tie('e'))
      .map(([a, b]) => `(i32.wrap_i64 (i64.mul (i64.extend_i32_s ${a}) (i64.extend_i32_u ${b})))`),
    fc.tuple(tie('e'), tie('e'), tie('e')).map(([c, a, b]) => `(select ${a} ${b} ${c})`),
    fc
      .tuple(tie('e'), tie('e'), tie('e'))
      .map(([c, a, b]) => `(if (result i32) ${c} (then ${a}) (else ${b}))`),
    fc
      .tuple(tie('e'), tie('e'), tie('e'))
      .map(([c, a, b]) => `(block (result i32) ${a} ${c} (br_if 0) (drop) ${b})`),
    tie('e').map((a) => `(i32.load (i32.and ${a} (i32.const 0xfffc)))`),
    tie('e').map((a) => `(i32.load8_s (i32.and ${a} (i32.const 0xffff)))`),
    tie('e').map((a) => `(call $h ${a})`),
    tie('e').map((a) => `(local.tee 2 ${a})`),
    // A loop, its body any expression folded into local 2. Every loop of a function counts in local 3, never
    // reset, and turns again only while it is below 20 at most: the loops of a call end, nested or not.
    fc
      .tuple(fc.integer({ min: 0, max: 20 }), tie('e'))
      .map(
        ([n, body]) =>
          `(block (result i32) (loop (local.set 2 (i32.add (local.get 2) ${body})) (br_if 0 (i32.lt_u (local.tee 3 (i32.add (local.get 3) (i32.const 1))) (i32.const ${n})))) (local.get 2))`,
      ),
  ),
})).e;

/** A statement: what changes locals, memory and the global. */
const stmt = fc.oneof(
  expr.map((e) => `(local.set 2 ${e})`),
  expr.map((e) => `(global.set $g ${e})`),
  fc.tuple(expr, expr).map(([a, v]) => `(i32.store (i32.and ${a} (i32.const 0xfffc)) ${v})`),
  fc
    .tuple(expr, expr, expr)
    .map(
      ([d, v, n]) => `(memory.fill (i32.and ${d} (i32.const 0x7fff)) ${v} (i32.and ${n} (i32.const 0x3ff)))`,
    ),
  fc
    .tuple(expr, expr, expr)
    .map(
      ([d, s, n]) =>
        `(memory.copy (i32.and ${d} (i32.const 0x7fff)) (i32.and ${s} (i32.const 0x7fff)) (i32.and ${n} (i32.const 0x3ff)))`,
    ),
  expr.map((e) => `(drop (memory.grow (i32.and ${e} (i32.const 1))))`),
  fc.tuple(expr, expr).map(([c, e]) => `(if ${c} (then (local.set 2 ${e})))`),
  expr.map((e) => `(drop ${e})`),
);

const program = fc.record({ helper: expr, body: fc.array(stmt, { maxLength: 5 }), result: expr }).map(
  ({ helper, body, result }) => `(module
  (memory (export "memory") 1 4)
  (global $g (mut i32) (i32.const 7))
  (func $h (param i32) (result i32) (local i32 i32 i32)
    ${helper.replaceAll('(call $h', '(i32.add (i32.const 1)')})
  (func (export "f") (param i32 i32) (result i32) (local i32 i32)
    ${body.join('\n    ')}
    ${result})
  (func (export "g") (result i32) (global.get $g)))`,
);

type Outcome = { value?: number; trapped: boolean; memory: string; global: number };

const FUEL = 10n ** 12n;

/** What calling f with each of `args` does, in order on one instance; `fuel` is told the fuel left after. */
function run(bytes: Uint8Array, args: [number, number][], fuel?: (left: bigint) => void): Outcome[] {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  const e = instance.exports as Record<string, unknown>;
  const meter = e[FUEL_EXPORT] as WebAssembly.Global | undefined;
  if (meter !== undefined) meter.value = FUEL;
  const memory = e.memory as WebAssembly.Memory;
  const outcomes = args.map(([a, b]) => {
    let out: Outcome;
    try {
      out = { value: (e.f as (a: number, b: number) => number)(a, b), trapped: false, memory: '', global: 0 };
    } catch (error) {
      expect(error).toBeInstanceOf(WebAssembly.RuntimeError);
      out = { trapped: true, memory: '', global: 0 };
    }
    out.memory = `${memory.buffer.byteLength}:${hash(new Uint8Array(memory.buffer))}`;
    out.global = (e.g as () => number)();
    return out;
  });
  if (meter !== undefined) fuel?.(meter.value as bigint);
  return outcomes;
}

function hash(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  return h >>> 0;
}

function coded(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ReedError);
    expect(isCode((error as ReedError).code)).toBe(true);
    return undefined;
  }
}

describe('the instrumenter on generated valid modules', () => {
  it('keeps them valid and computing the same results, traps, memory and globals', async () => {
    await fuzz(
      'wasm: instrumented modules compute the same',
      150,
      fc.property(program, fc.array(fc.tuple(i32, i32), { minLength: 1, maxLength: 4 }), (text, args) => {
        const original = wat(text);
        expect(WebAssembly.validate(original)).toBe(true);
        coded(() => checkModule(original, POLICY, AT));
        const prepared = prepareModule(original, OPTIONS);
        expect(WebAssembly.validate(prepared.bytes)).toBe(true);
        let left = FUEL;
        expect(run(prepared.bytes, args, (f) => (left = f))).toEqual(run(original, args));
        expect(left).toBeLessThan(FUEL); // the metering ran
      }),
    );
  });
});

describe('the module checks on invalid modules', () => {
  it('answer mutations of valid modules and arbitrary bytes with a coded error, or accept them', async () => {
    const input = fc.oneof(
      program.chain((text) => mutated(wat(text))),
      fc.uint8Array({ maxLength: 512 }).map((b) => new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...b])),
      fc.uint8Array({ maxLength: 64 }),
    );
    await fuzz(
      'wasm: mutated and arbitrary modules (checks, instrumenter)',
      400,
      fc.property(input, (bytes) => {
        coded(() => checkModule(bytes, POLICY, AT));
        const prepared = coded(() => prepareModule(bytes, OPTIONS)) as { bytes: Uint8Array } | undefined;
        // What the instrumenter makes of a valid module is valid; of an invalid one, never a host crash.
        if (prepared !== undefined && WebAssembly.validate(bytes))
          expect(WebAssembly.validate(prepared.bytes)).toBe(true);
      }),
    );
  });
});
