// OutputBuffer (src/runtime/wasm/output-buffer.ts): a call's output in the order it was written, whatever mix of
// one write, many small writes and large writes made it.
import { describe, expect, it } from 'vitest';
import { OUTPUT_PIECE_BYTES, OutputBuffer } from '../../src/runtime/wasm/output-buffer.js';

/** Bytes i, i+1, ... (mod 251), so that any reordering or loss shows. */
const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) % 251);

describe('OutputBuffer', () => {
  it('keeps one write as a copy of exactly its bytes', () => {
    const out = new OutputBuffer();
    const written = bytes(0, 64);
    out.append(written);
    written.fill(0); // the guest's memory changes after the write
    const taken = out.take();
    expect(taken).toEqual(bytes(0, 64));
    expect(taken.buffer.byteLength).toBe(64);
  });

  it('keeps the order of a first write, small writes across growing pieces, a large write and empty ones', () => {
    const out = new OutputBuffer();
    const expected: number[] = [];
    let at = 0;
    const write = (n: number) => {
      const chunk = bytes(at, n);
      out.append(chunk);
      expected.push(...chunk);
      at += n;
    };
    write(10);
    for (let i = 0; i < 3000; i++) write(i % 7); // 0-6 bytes each: past several doublings of the pieces
    write(OUTPUT_PIECE_BYTES + 3);
    write(1);
    write(0);
    out.adopt(bytes(at, 5));
    expected.push(...bytes(at, 5));
    expect(Array.from(out.take())).toEqual(expected);
  });

  it('copies only the range it is given of a larger array', () => {
    const out = new OutputBuffer();
    const memory = bytes(0, 1000);
    out.append(memory, 100, 164);
    out.append(memory, 500, 503);
    out.append(memory, 7, 7);
    expect(Array.from(out.take())).toEqual([...bytes(100, 64), ...bytes(500, 3)]);
  });

  it('takes nothing as an empty array', () => {
    expect(new OutputBuffer().take()).toHaveLength(0);
  });
});

describe('OutputBuffer.reset (one buffer for every call of an instance)', () => {
  it('starts empty again, and leaves what an earlier take returned as it was', () => {
    const out = new OutputBuffer();
    out.append(bytes(0, 64));
    const first = out.take();
    out.reset();
    out.append(bytes(100, 10), 2, 6);
    for (let i = 0; i < 300; i++) out.append(bytes(i, 1));
    const second = out.take();
    expect(first).toEqual(bytes(0, 64));
    expect(second.length).toBe(4 + 300);
    expect([...second.subarray(0, 4)]).toEqual([...bytes(102, 4)]);
    out.reset();
    expect(out.take().length).toBe(0);
  });
});
