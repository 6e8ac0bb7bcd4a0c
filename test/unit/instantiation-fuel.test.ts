import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { encodeName, encodeU32 } from '../../src/runtime/wasm/binary.js';
import { compileWasm } from '../../src/runtime/wasm/compile-wasm.js';
import {
  EMPTY_INSTANCE_SHAPE,
  FUEL_PER_DATA_BYTE,
  FUEL_PER_ELEMENT_BYTE,
  FUEL_PER_EXPORT,
  FUEL_PER_EXPORT_BYTE,
  FUEL_PER_FUNCTION,
  FUEL_PER_GLOBAL,
  FUEL_PER_INITIAL_PAGE,
  FUEL_PER_INSTANCE,
  FUEL_PER_LINKED_IMPORT,
  FUEL_PER_MEMORY,
  FUEL_PER_SEGMENT,
  FUEL_PER_TABLE,
  FUEL_PER_TAG,
  INSTANTIATION_FUEL_SECTION,
  instantiationFuel,
  moduleInstantiationFuel,
} from '../../src/runtime/wasm/instantiation-fuel.js';
import {
  checkModuleLimits,
  DEFAULT_WASM_MODULE_LIMITS,
  type WasmModuleLimits,
} from '../../src/runtime/wasm/module-limits.js';
import { prepareModule } from '../../src/runtime/wasm/prepare-module.js';
import { watCompiler } from '../helpers/wat.js';

let wat: (text: string) => Uint8Array;
beforeAll(async () => {
  wat = await watCompiler();
});

const OPTIONS = { fuel: true, initialFuel: 1_000_000_000n, memoryCapPages: 1024, tableCapElements: 1000 };

/** `module` with one more section appended (custom sections may stand anywhere; a data section last is valid). */
function withSection(module: Uint8Array, id: number, content: number[] | Uint8Array): Uint8Array {
  const body = Uint8Array.from(content);
  return Uint8Array.from([...module, id, ...encodeU32(body.length), ...body]);
}

/** A data section of one active segment of `bytes` bytes at offset 0: its content's size, and the section. */
function dataSection(bytes: number): { size: number; content: Uint8Array } {
  const head = [1, 0x00, 0x41, 0x00, 0x0b, ...encodeU32(bytes)];
  const content = new Uint8Array(head.length + bytes);
  content.set(head);
  content.fill(1, head.length);
  return { size: content.length, content };
}

describe('what making an instance costs', () => {
  it('is priced from the memory, tables, data and elements the module declares, and written into it', () => {
    const base = wat(`(module (memory (export "memory") 3) (table 10 funcref)
      (func $f (export "f") (result i32) (i32.const 0)) (elem (i32.const 0) $f $f))`);
    const data = dataSection(5_000);
    const prepared = prepareModule(withSection(base, 11, data.content), OPTIONS);
    // The element section of wabt's output: its content's size, read back from the module.
    const elementBytes = sectionSize(base, 9);
    const expected = instantiationFuel({
      ...EMPTY_INSTANCE_SHAPE,
      memoryPages: 3,
      tableElements: 10,
      dataBytes: data.size,
      elementBytes,
      tables: 1,
      exports: 2,
      exportBytes: sectionSize(base, 7),
      functions: 1,
      segments: 2,
    });
    expect(prepared.instantiationFuel).toBe(expected);
    expect(expected).toBeGreaterThan(data.size * FUEL_PER_DATA_BYTE);
    // The runtime reads it from the compiled module, before it makes an instance.
    expect(moduleInstantiationFuel(new WebAssembly.Module(prepared.bytes))).toBe(expected);
    // Without fuel the module carries no price: it has no fuel to pay it from.
    const unmetered = prepareModule(base, { ...OPTIONS, fuel: false });
    expect(moduleInstantiationFuel(new WebAssembly.Module(unmetered.bytes))).toBe(0);
  });

  it('grows with the initial memory: 1,024 pages cost more than 1', () => {
    const small = prepareModule(wat('(module (memory 1) (func (export "_start")))'), OPTIONS);
    const large = prepareModule(wat('(module (memory 1024) (func (export "_start")))'), OPTIONS);
    expect(large.instantiationFuel - small.instantiationFuel).toBe(
      instantiationFuel({ ...EMPTY_INSTANCE_SHAPE, memoryPages: 1024 }) -
        instantiationFuel({ ...EMPTY_INSTANCE_SHAPE, memoryPages: 1 }),
    );
  });

  it('a module that brings a section of that name itself (a price of 0) is refused', () => {
    const own = withSection(wat('(module (func (export "_start")))'), 0, [
      ...encodeName(INSTANTIATION_FUEL_SECTION),
      ...new Array(8).fill(0),
    ]);
    expect(() => prepareModule(own, OPTIONS)).toThrow(
      expect.objectContaining({ code: 'wasm_invalid', message: expect.stringContaining('reserved') }),
    );
  });

  it('load refuses a module whose instance costs more than fuel_per_call, naming the file and the limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reed-instance-fuel-'));
    const file = join(dir, 'plugin.wasm');
    // 16 MiB of data: 268M fuel to copy in, past a budget of 50M.
    const data = dataSection(16 * 1024 * 1024);
    writeFileSync(file, withSection(wat('(module (memory 256) (func (export "_start")))'), 11, data.content));
    const options = { pluginId: 'test.big-data', memoryMb: 64, tableElements: 1000 };
    await expect(compileWasm(file, { ...options, fuelPerCall: 50_000_000 })).rejects.toMatchObject({
      code: 'wasm_limit_exceeded',
      file,
      message: expect.stringMatching(/costs \d+ fuel .*limits\.fuel_per_call = 50000000/),
    });
    // With the fuel to pay for it, it loads, and carries its price.
    const compiled = await compileWasm(file, { ...options, fuelPerCall: 1_000_000_000 });
    expect(moduleInstantiationFuel(compiled.module)).toBeGreaterThan(data.size * FUEL_PER_DATA_BYTE);
  });
});

/** `n` copies of `item(i)`, space-separated: the body of a generated WAT module. */
const times = (n: number, item: (i: number) => string) =>
  Array.from({ length: n }, (_, i) => item(i)).join(' ');

const section = (id: number, content: number[]) => [id, ...encodeU32(content.length), ...content];

type Counted = 'exports' | 'imports' | 'globals' | 'tags';
/** Modules of `n` exports, imports, globals or tags and nothing else (but the one function the exports name). */
const MANY: Record<Counted, (n: number) => Uint8Array> = {
  exports: (n) => wat(`(module (func $f) ${times(n, (i) => `(export "e${i}" (func $f))`)})`),
  imports: (n) =>
    wat(`(module ${times(n, () => '(import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))')})`),
  globals: (n) => wat(`(module ${times(n, () => '(global i32 (i32.const 0))')})`),
  // By hand: the WAT compiler here has exceptions off. A type () -> (), then the tag section: n tags of that type.
  tags: (n) =>
    Uint8Array.from([
      ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
      ...section(1, [1, 0x60, 0, 0]),
      ...section(13, [...encodeU32(n), ...new Array<number>(n * 2).fill(0)]),
    ]),
};

const LIMIT: Record<Counted, { key: keyof WasmModuleLimits; name: string }> = {
  exports: { key: 'maxExports', name: 'max_exports' },
  imports: { key: 'maxImports', name: 'max_imports' },
  globals: { key: 'maxGlobals', name: 'max_globals' },
  tags: { key: 'maxTags', name: 'max_tags' },
};

// Found by a second review of class 6: 99k exports or 1M tags held the host's thread 36-336 ms an instance (a
// command's every call) for the price of an empty module.
describe('what a module declares is paid for at every instance, and capped', () => {
  it.each([
    // The exports all name one function, which costs its own price.
    ['exports', 500, FUEL_PER_EXPORT, FUEL_PER_FUNCTION],
    ['imports', 200, FUEL_PER_LINKED_IMPORT, 0],
    ['globals', 300, FUEL_PER_GLOBAL, 0],
    ['tags', 300, FUEL_PER_TAG, 0],
  ] as const)('%s: %i of them pay %i fuel each', (kind, n, price, fixed) => {
    const module = MANY[kind](n);
    const prepared = prepareModule(module, OPTIONS);
    const exportBytes = sectionSize(module, 7);
    expect(prepared.instantiationFuel).toBe(
      FUEL_PER_INSTANCE + fixed + n * price + exportBytes * FUEL_PER_EXPORT_BYTE,
    );
    const functions = kind === 'exports' ? 1 : 0;
    expect(prepared.instantiationFuel).toBe(
      instantiationFuel({ ...EMPTY_INSTANCE_SHAPE, [kind]: n, functions, exportBytes }),
    );
    expect(moduleInstantiationFuel(new WebAssembly.Module(prepared.bytes))).toBe(prepared.instantiationFuel);
  });

  // A third review: one export named with 50 MB held a command's every call 10 ms (V8 makes each name's string
  // at every instantiation) for 131,585 fuel.
  it('the export section pays by its bytes: a long name costs what it is long', () => {
    const name = 'n'.repeat(100_000);
    const long = prepareModule(wat(`(module (func $f) (export "${name}" (func $f)))`), OPTIONS);
    const short = prepareModule(wat('(module (func $f) (export "n" (func $f)))'), OPTIONS);
    expect(long.instantiationFuel - short.instantiationFuel).toBeGreaterThanOrEqual(
      (name.length - 1) * FUEL_PER_EXPORT_BYTE,
    );
  });

  it('so do tables, functions and segments, beside their sizes', () => {
    const bytes = wat(`(module (memory 1) ${times(3, () => '(table 0 funcref)')} ${times(20, () => '(func)')}
      ${times(40, () => '(data (i32.const 0) "")')} ${times(5, () => '(elem funcref)')})`);
    const prepared = prepareModule(bytes, OPTIONS);
    expect(prepared.instantiationFuel).toBe(
      FUEL_PER_INSTANCE +
        FUEL_PER_MEMORY +
        FUEL_PER_INITIAL_PAGE +
        3 * FUEL_PER_TABLE +
        20 * FUEL_PER_FUNCTION +
        45 * FUEL_PER_SEGMENT +
        sectionSize(bytes, 11) * FUEL_PER_DATA_BYTE +
        sectionSize(bytes, 9) * FUEL_PER_ELEMENT_BYTE,
    );
  });

  it.each(Object.keys(LIMIT) as Counted[])(
    '%s: a module at the default cap passes; one over it is refused at load, naming the file and the key',
    async (kind) => {
      const { key, name } = LIMIT[kind];
      const cap = DEFAULT_WASM_MODULE_LIMITS[key];
      expect(() => checkModuleLimits(MANY[kind](cap), DEFAULT_WASM_MODULE_LIMITS)).not.toThrow();
      const file = join(mkdtempSync(join(tmpdir(), 'reed-instance-caps-')), 'plugin.wasm');
      writeFileSync(file, MANY[kind](cap + 1));
      const options = {
        pluginId: 'test.many',
        memoryMb: 64,
        tableElements: 1000,
        fuelPerCall: 1_000_000_000,
      };
      const error = await compileWasm(file, options).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'wasm_limit_exceeded', pluginId: 'test.many', file });
      const message = (error as Error).message;
      expect(message).toContain(`${file}: the module `);
      expect(message).toContain(`${cap + 1} ${kind}, above the host's limit of ${cap}`);
      expect(message).toContain(`raise [wasm] ${name}`);
      // The key is host configuration: raising it lets the same module past the check.
      const dir = mkdtempSync(join(tmpdir(), 'reed-instance-caps-'));
      writeFileSync(join(dir, 'reed.toml'), `[wasm]\n${name} = ${cap + 1}\n`);
      const limits = loadHostConfig({ file: join(dir, 'reed.toml'), cwd: dir, env: {}, home: dir }).wasm
        .limits;
      expect(limits[key]).toBe(cap + 1);
      expect(() => checkModuleLimits(MANY[kind](cap + 1), limits)).not.toThrow();
    },
  );
});

/** The size of the content of section `id` in `module` (0 if absent). */
function sectionSize(module: Uint8Array, id: number): number {
  let at = 8;
  while (at < module.length) {
    const sectionId = module[at++] as number;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      const b = module[at++] as number;
      size |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
    }
    if (sectionId === id) return size;
    at += size;
  }
  return 0;
}
