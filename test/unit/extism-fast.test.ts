// Extism's loads and stores in WebAssembly (src/runtime/wasm/extism-fast.wat, its bytes in extism-fast.ts): the
// bytes are the text's, and they answer, charge and zero as the arena's JavaScript did (and as Extism's kernel
// answers), over a real memory, with the runtime's fuel constants.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { FUEL_PER_HOST_CALL } from '../../src/runtime/wasm/abi.js';
import { extismFast, extismFastBytes } from '../../src/runtime/wasm/extism-fast.js';
import { REPO } from '../helpers/cli.js';

const PAGE = 65_536;
/** When the runtime settles what imports owe (wasm-plugin.ts SETTLE_FUEL): the module pays at it too. */
const SETTLE_FUEL = 10_000;

function fast(pages = 1) {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: 4 });
  const paid: number[] = [];
  const f = extismFast(memory, (fuel) => void paid.push(fuel >>> 0));
  return { f, memory, bytes: () => new Uint8Array(memory.buffer), paid };
}

it('its bytes are wabt’s assembly of extism-fast.wat (scripts/extism-fast.mjs writes them)', async () => {
  const wabt = await wabtFactory();
  const text = readFileSync(join(REPO, 'src/runtime/wasm/extism-fast.wat'), 'utf8');
  const module = wabt.parseWat('extism-fast.wat', text, { bulk_memory: true });
  try {
    module.validate();
    expect(Buffer.from(module.toBinary({}).buffer)).toEqual(Buffer.from(extismFastBytes()));
  } finally {
    module.destroy();
  }
});

describe('inside the extent [8, memory.size * 64 KiB)', () => {
  it('loads and stores work, little-endian, aligned or not, up to the last byte', () => {
    const { f, bytes } = fast();
    f.store_u64(13n, 0x0807060504030201n);
    expect([...bytes().subarray(13, 21)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(f.load_u64(13n)).toBe(0x0807060504030201n);
    expect(f.load_u8(14n)).toBe(2);
    f.store_u64(BigInt(PAGE - 8), -1n); // an i64 argument: the unsigned value is stored
    expect(f.load_u64(BigInt(PAGE - 8))).toBe(-1n); // and answered as an i64
    f.store_u8(BigInt(PAGE - 1), 0x1ff); // an i32's low byte
    expect(f.load_u8(BigInt(PAGE - 1))).toBe(0xff);
  });
});

describe('outside it', () => {
  it.each([
    ['0 to 7', 0n],
    ['7', 7n],
    ['negative', -8n],
    ['wild', 0x7fff_ffff_ffff_ffffn],
    ['just past the end', BigInt(PAGE)],
    ['past 2^32 (the wrap of an i32 would land inside)', 2n ** 32n + 16n],
  ])('%s: a load answers 0, a store does nothing', (_name, p) => {
    const { f, bytes } = fast();
    bytes().fill(0xaa); // every byte, 0 to 7 included
    f.store_u64(p, 0n);
    f.store_u8(p, 0);
    expect(bytes().every((b) => b === 0xaa)).toBe(true);
    expect(f.load_u64(p)).toBe(0n);
    expect(f.load_u8(p)).toBe(0);
  });

  it('a u64 straddling the end: loaded as 0, not stored (its first bytes are inside)', () => {
    const { f, bytes } = fast();
    bytes().fill(0xaa);
    f.store_u64(BigInt(PAGE - 4), 0n);
    expect(bytes().every((b) => b === 0xaa)).toBe(true);
    expect(f.load_u64(BigInt(PAGE - 4))).toBe(0n);
    expect(f.load_u8(BigInt(PAGE - 4))).toBe(0xaa);
  });

  it('the extent follows the memory when it grows', () => {
    const { f, memory } = fast();
    f.store_u8(BigInt(PAGE + 5), 9);
    expect(f.load_u8(BigInt(PAGE + 5))).toBe(0);
    memory.grow(1);
    f.store_u8(BigInt(PAGE + 5), 9);
    expect(f.load_u8(BigInt(PAGE + 5))).toBe(9);
  });
});

describe('fuel', () => {
  it('each load or store owes FUEL_PER_HOST_CALL plus its bytes, paid at SETTLE_FUEL and by take_debt', () => {
    const { f, paid } = fast();
    f.load_u64(8n);
    f.load_u8(8n);
    f.load_u64(0n); // outside: charged all the same
    expect(f.take_debt()).toBe(3 * FUEL_PER_HOST_CALL + 8 + 1 + 8);
    expect(f.take_debt()).toBe(0);
    const each = FUEL_PER_HOST_CALL + 8;
    const calls = Math.ceil(SETTLE_FUEL / each);
    for (let i = 0; i < calls; i++) f.load_u64(8n);
    expect(paid).toEqual([calls * each]);
    expect(f.take_debt()).toBe(0);
  });

  it('a store past every byte stored since the reset owes the bytes up to its end, before it is made', () => {
    const { f, paid, memory, bytes } = fast(4);
    const last = BigInt(4 * PAGE - 1);
    f.store_u8(8n, 1); // reaches 9: one byte past the start
    expect(f.take_debt()).toBe(FUEL_PER_HOST_CALL + 1 + 1);
    f.store_u8(last, 1);
    expect(paid).toEqual([FUEL_PER_HOST_CALL + 1 + (4 * PAGE - 9)]);
    f.store_u8(last, 2); // nothing new reached
    expect(f.take_debt()).toBe(FUEL_PER_HOST_CALL + 1);
    // A payment that fails (fuel, deadline) ends the store before it is made.
    const refusing = extismFast(memory, () => {
      throw new Error('out of fuel');
    });
    refusing.reset(8);
    bytes().fill(0);
    expect(() => refusing.store_u8(last, 7)).toThrow('out of fuel');
    expect(bytes()[4 * PAGE - 1]).toBe(0);
  });
});

describe('reset', () => {
  it('zeroes from 8 to the furthest store or to the mark given, whichever is further, and forgets the stores', () => {
    const { f, bytes, paid } = fast(2);
    f.store_u64(100n, -1n);
    bytes().fill(0xcc, 200, 300); // the runtime's own writes, below its mark
    bytes().fill(0xdd, 0, 8); // 0 to 7 are not the arena's
    f.reset(300);
    expect(
      bytes()
        .subarray(8)
        .every((b) => b === 0),
    ).toBe(true);
    expect([...bytes().subarray(0, 8)]).toEqual(new Array(8).fill(0xdd));
    f.take_debt();
    f.store_u8(BigInt(2 * PAGE - 1), 1); // past everything since the reset: the gap from 8 is owed again
    expect(paid).toEqual([FUEL_PER_HOST_CALL + 1 + (2 * PAGE - 8)]);
    f.reset(8);
    expect(bytes()[2 * PAGE - 1]).toBe(0);
  });
});
