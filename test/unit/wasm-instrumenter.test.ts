import { beforeAll, describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import {
  GROWN_PAGE_SHIFT,
  LARGE_GROW_SHIFT,
  LARGE_MEMORY_PAGES,
  MAX_PRECHARGE,
} from '../../src/runtime/wasm/instrument-code.js';
import { checkModuleLimits, DEFAULT_WASM_MODULE_LIMITS } from '../../src/runtime/wasm/module-limits.js';
import { FUEL_EXPORT, MAX_EXPANSION, prepareModule } from '../../src/runtime/wasm/prepare-module.js';
import { watCompiler } from '../helpers/wat.js';

let wat: (text: string) => Uint8Array;
let disassemble: (bytes: Uint8Array) => string;
beforeAll(async () => {
  wat = await watCompiler();
  const wabt = await wabtFactory();
  disassemble = (bytes) => {
    const m = wabt.readWasm(bytes, { bulk_memory: true, reference_types: true });
    try {
      m.generateNames();
      m.applyNames();
      return m.toText({ foldExprs: false, inlineExport: false });
    } finally {
      m.destroy();
    }
  };
});

const OPTIONS = { fuel: true, initialFuel: 1_000_000n, memoryCapPages: 1024, tableCapElements: 1000 };

function instantiate(bytes: Uint8Array, options = OPTIONS) {
  const prepared = prepareModule(bytes, options);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(prepared.bytes), {});
  return {
    exports: instance.exports as Record<string, unknown>,
    fuel: instance.exports[FUEL_EXPORT] as WebAssembly.Global,
  };
}

describe('bulk instructions are charged before they run', () => {
  it('memory.fill with less fuel than its length traps without writing a byte', () => {
    const { exports, fuel } = instantiate(
      wat(`(module (memory (export "memory") 16)
        (func (export "fill") (param i32) (memory.fill (i32.const 0) (i32.const 7) (local.get 0))))`),
    );
    const memory = new Uint8Array((exports.memory as WebAssembly.Memory).buffer);
    fuel.value = 1000n;
    expect(() => (exports.fill as (n: number) => void)(100_000)).toThrow(WebAssembly.RuntimeError);
    expect(fuel.value as bigint).toBeLessThan(0n);
    expect(memory.every((b) => b === 0)).toBe(true);
    // With enough fuel the same call runs, and is charged about one fuel per byte.
    fuel.value = 1_000_000n;
    (exports.fill as (n: number) => void)(100_000);
    expect(memory[99_999]).toBe(7);
    expect(1_000_000n - (fuel.value as bigint)).toBeGreaterThanOrEqual(100_000n);
  });

  it('memory.grow is charged even for 0 pages; a function is charged per declared local', () => {
    const { exports, fuel } = instantiate(
      wat(`(module (memory 1 4)
        (func (export "grow") (result i32) (memory.grow (i32.const 0)))
        (func (export "locals") (local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64)))`),
    );
    fuel.value = 1_000_000n;
    (exports.grow as () => number)();
    expect(1_000_000n - (fuel.value as bigint)).toBeGreaterThanOrEqual(8_192n);
    fuel.value = 1_000n;
    (exports.locals as () => void)();
    expect(1_000n - (fuel.value as bigint)).toBeGreaterThanOrEqual(10n);
  });
});

describe('a successful memory.grow is charged per page of the new size (V8 accounts the whole memory anew)', () => {
  const GROW = `(module (memory (export "memory") 1 100)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`;
  const used = (grow: (pages: number) => number, fuel: WebAssembly.Global, pages: number) => {
    fuel.value = 10_000_000n;
    const result = grow(pages);
    return { result, used: 10_000_000n - (fuel.value as bigint) };
  };

  it('charges the fixed cost plus 2^GROWN_PAGE_SHIFT per page the memory has after it, and returns the old size', () => {
    const { exports, fuel } = instantiate(wat(GROW));
    const grow = exports.grow as (pages: number) => number;
    const small = used(grow, fuel, 1); // 1 -> 2 pages
    expect(small.result).toBe(1);
    const large = used(grow, fuel, 50); // 2 -> 52 pages
    expect(large.result).toBe(2);
    expect((exports.memory as WebAssembly.Memory).buffer.byteLength).toBe(52 * 65536);
    // The same instructions either way: the difference is the 50 pages more the second grow left.
    expect(large.used - small.used).toBe(50n << BigInt(GROWN_PAGE_SHIFT));
    expect(small.used).toBeGreaterThanOrEqual(8_192n + (2n << BigInt(GROWN_PAGE_SHIFT)));
  });

  it('does not charge a grow that fails (past the maximum), and one that runs out of fuel traps with the memory grown', () => {
    const { exports, fuel } = instantiate(wat(GROW));
    const grow = exports.grow as (pages: number) => number;
    const zero = used(grow, fuel, 0);
    expect(zero.result).toBe(1);
    const failed = used(grow, fuel, 1_000);
    expect(failed.result).toBe(-1);
    // Neither reached V8's grow: both are charged the fixed cost alone.
    expect(failed.used).toBe(zero.used);
    // Enough for the fixed cost, not for the 99 pages after it.
    fuel.value = 8_300n;
    expect(() => grow(98)).toThrow(WebAssembly.RuntimeError);
    expect(fuel.value as bigint).toBeLessThan(0n);
  });

  it('answers a grow of 0 pages with the size, without V8 making a new buffer of the memory', () => {
    const { exports, fuel } = instantiate(wat(GROW));
    const memory = exports.memory as WebAssembly.Memory;
    const before = memory.buffer;
    fuel.value = 1_000_000n;
    expect((exports.grow as (pages: number) => number)(0)).toBe(1);
    // A grow that reached V8 would have detached the old buffer (byteLength 0) and made a new one.
    expect(memory.buffer).toBe(before);
    expect(before.byteLength).toBe(65_536);
    expect((exports.grow as (pages: number) => number)(1)).toBe(1);
    expect(before.byteLength).toBe(0);
  });
});

describe('a successful memory.grow of a memory over 64 MiB is charged a full collection of the heap', () => {
  // Up to 64 MiB a grow is charged by the page; past it V8 collects the heap at every grow (the memory counted twice
  // for a moment passes what it allows over its last collection).
  const start = (pages: number) =>
    instantiate(
      wat(`(module (memory ${pages} 4096) (global $n (export "n") (mut i32) (i32.const 0))
        (func (export "grow1") (result i32) (memory.grow (i32.const 1)))
        (func (export "loop") (loop $l (global.set $n (i32.add (global.get $n) (i32.const 1)))
          (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))))`),
      { ...OPTIONS, memoryCapPages: 4096 },
    );
  const oneGrow = (pages: number) => {
    const { exports, fuel } = start(pages);
    fuel.value = 1n << 40n;
    expect((exports.grow1 as () => number)()).toBe(pages);
    return (1n << 40n) - (fuel.value as bigint);
  };

  it('charges 2^LARGE_GROW_SHIFT more once the new size is over LARGE_MEMORY_PAGES, by the page below it', () => {
    const to = oneGrow(LARGE_MEMORY_PAGES - 1); // to 1,024 pages
    const past = oneGrow(LARGE_MEMORY_PAGES); // to 1,025
    expect(to).toBeLessThan(1n << 20n);
    expect(past - to).toBe((1n << BigInt(LARGE_GROW_SHIFT)) + (1n << BigInt(GROWN_PAGE_SHIFT)));
  });

  it('so the default fuel_per_call buys about 15 one-page grows of such a memory, where it bought 13,000', () => {
    const { exports, fuel } = start(LARGE_MEMORY_PAGES + 1);
    fuel.value = 1_000_000_000n;
    expect(() => (exports.loop as () => void)()).toThrow(WebAssembly.RuntimeError);
    const grows = (exports.n as WebAssembly.Global).value as number;
    expect(grows).toBeGreaterThanOrEqual(14);
    expect(grows).toBeLessThanOrEqual(16);
  });
});

describe('the fuel counter lives in a local between the points where others can see it', () => {
  const SUM = `(module
    (func (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $s (i32.add (local.get $s) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (local.get $s)))`;

  it('a loop without calls reads the fuel global once, at entry, and writes it only on the way out', () => {
    const text = disassemble(prepareModule(wat(SUM), OPTIONS).bytes);
    const fuelIndex = /\(global \$(\S+) \(mut i64\)/.exec(text)?.[1];
    expect(fuelIndex).toBeDefined();
    const count = (op: string) => text.match(new RegExp(`${op} \\$${fuelIndex}\\b`, 'g'))?.length ?? 0;
    expect(count('global.get')).toBe(1);
    // The return, and the store before each of the two checks' traps (entry, loop head).
    expect(count('global.set')).toBe(3);
  });

  it('charges every iteration, and the global holds the total when the function returns', () => {
    const { exports, fuel } = instantiate(wat(SUM));
    const used = (n: number) => {
      fuel.value = 1_000_000n;
      (exports.sum as (n: number) => number)(n);
      return 1_000_000n - (fuel.value as bigint);
    };
    const [a, b, c] = [used(100), used(200), used(300)];
    expect(b - a).toBeGreaterThanOrEqual(100n * 10n);
    expect(c - b).toBe(b - a);
  });

  it('an explicit trap stores the counter first: the global holds the work done before it', () => {
    const { exports, fuel } = instantiate(
      wat(`(module (func (export "f") (param $n i32) (local $i i32)
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
        (unreachable)))`),
    );
    fuel.value = 1_000_000n;
    expect(() => (exports.f as (n: number) => void)(1000)).toThrow(WebAssembly.RuntimeError);
    expect(1_000_000n - (fuel.value as bigint)).toBeGreaterThanOrEqual(1000n * 8n);
  });

  it(`a taken br_if pays for at most ${MAX_PRECHARGE} instructions it skipped`, () => {
    const skipping = (n: number) =>
      wat(`(module (func (export "f") (param i32) (block (br_if 0 (local.get 0)) ${'(nop) '.repeat(n)})))`);
    for (const tail of [MAX_PRECHARGE, 4 * MAX_PRECHARGE]) {
      const { exports, fuel } = instantiate(skipping(tail));
      const used = (taken: number) => {
        fuel.value = 1_000_000n;
        (exports.f as (x: number) => void)(taken);
        return 1_000_000n - (fuel.value as bigint);
      };
      const [taken, fallen] = [used(1), used(0)];
      expect(taken).toBeLessThanOrEqual(fallen);
      expect(taken - (fallen - BigInt(tail))).toBeLessThanOrEqual(BigInt(MAX_PRECHARGE));
    }
  });
});

describe('the instrumenter decodes every opcode exactly or refuses the module', () => {
  // One function whose body is `bytes`, then `end`; built by hand because no assembler writes unknown opcodes.
  const withBody = (bytes: number[]) => {
    const body = [0x00, ...bytes, 0x0b];
    return Uint8Array.from([
      ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
      ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00],
      ...[0x03, 0x02, 0x01, 0x00],
      ...[0x0a, body.length + 2, 0x01, body.length, ...body],
    ]);
  };
  it.each([
    ['an unknown 0xfc instruction', [0xfc, 0x12]],
    ['a SIMD opcode past relaxed SIMD', [0xfd, 0x80, 0x04]],
    ['an unknown atomic', [0xfe, 0x04]],
    ['a GC instruction', [0xfb, 0x00]],
    ['try_table', [0x1f, 0x40, 0x00, 0x0b]],
  ])('%s is wasm_unsupported', (_, bytes) => {
    expect(() => prepareModule(withBody(bytes), OPTIONS)).toThrow(
      expect.objectContaining({ code: 'wasm_unsupported' }),
    );
  });
});

describe('instrumentation is linear and bounded', () => {
  it(`code made of branches grows at most ${MAX_EXPANSION} times`, () => {
    const branches = Array.from({ length: 20_000 }, () => '(br_if 0 (i32.const 0))').join(' ');
    const bytes = wat(`(module (func (export "f") (block ${branches})))`);
    const prepared = prepareModule(bytes, OPTIONS);
    expect(WebAssembly.validate(prepared.bytes)).toBe(true);
    expect(prepared.bytes.length).toBeLessThanOrEqual(bytes.length * MAX_EXPANSION + 65_536);
  });

  it.each([
    ['maxFunctions', { maxFunctions: 1 }],
    ['maxFunctionBytes', { maxFunctionBytes: 4 }],
    ['maxCodeBytes', { maxCodeBytes: 8 }],
    ['maxFunctionLocals', { maxFunctionLocals: 3 }],
  ])('%s is enforced as wasm_limit_exceeded', (_, limit) => {
    const bytes = wat(`(module (func (local i32 i32 i32 i32) (nop) (nop)) (func))`);
    expect(() => checkModuleLimits(bytes, DEFAULT_WASM_MODULE_LIMITS)).not.toThrow();
    expect(() => checkModuleLimits(bytes, { ...DEFAULT_WASM_MODULE_LIMITS, ...limit })).toThrow(
      expect.objectContaining({ code: 'wasm_limit_exceeded' }),
    );
  });
});

describe('malformed names', () => {
  // Found by test/fuzz/wasm-module.test.ts: an export name that is not UTF-8 threw TextDecoder's TypeError out of
  // prepareModule, not a coded error.
  it('an export name that is not UTF-8 is wasm_invalid', () => {
    const module = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 7, 5, 1, 1, 0xff, 0, 0]);
    expect(() => prepareModule(module, OPTIONS)).toThrow(
      expect.objectContaining({ code: 'wasm_invalid', message: expect.stringContaining('not valid UTF-8') }),
    );
  });
});
