import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeName, encodeU32 } from '../../src/runtime/wasm/binary.js';
import { compileWasm } from '../../src/runtime/wasm/compile-wasm.js';
import {
  FUEL_PER_DATA_BYTE,
  INSTANTIATION_FUEL_SECTION,
  instantiationFuel,
  moduleInstantiationFuel,
} from '../../src/runtime/wasm/instantiation-fuel.js';
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
      memoryPages: 3,
      tableElements: 10,
      dataBytes: data.size,
      elementBytes,
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
      instantiationFuel({ memoryPages: 1024, tableElements: 0, dataBytes: 0, elementBytes: 0 }) -
        instantiationFuel({ memoryPages: 1, tableElements: 0, dataBytes: 0, elementBytes: 0 }),
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
