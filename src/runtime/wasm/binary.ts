/** Minimal reading and writing of the WebAssembly binary format: LEB128 and byte cursors. */

export class BinaryError extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

export class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  byte(): number {
    if (this.pos >= this.end) throw new BinaryError(`unexpected end of data at byte ${this.pos}`);
    return this.bytes[this.pos++] as number;
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new BinaryError(`unexpected end of data at byte ${this.pos}`);
    this.pos += n;
  }

  /** Unsigned LEB128 up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      if (shift === 28 && (b & 0x70) !== 0) throw new BinaryError(`u32 overflows at byte ${this.pos - 1}`);
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 28) throw new BinaryError(`u32 too long at byte ${this.pos}`);
    }
  }

  /** Skips a signed LEB128 of at most `bits` bits. */
  skipSigned(bits: number): void {
    const maxBytes = Math.ceil(bits / 7);
    for (let i = 0; i < maxBytes; i++) if ((this.byte() & 0x80) === 0) return;
    throw new BinaryError(`signed integer too long at byte ${this.pos}`);
  }

  /** Signed LEB128 up to 33 bits (block types), returned as a number. */
  s33(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 35) throw new BinaryError(`s33 too long at byte ${this.pos}`);
    } while ((b & 0x80) !== 0);
    if ((b & 0x40) !== 0) result -= 2 ** shift;
    return result;
  }

  /** A name: UTF-8 as the format requires, else a BinaryError (the decoder's TypeError was no coded error). */
  name(): string {
    const length = this.u32();
    const start = this.pos;
    this.skip(length);
    try {
      return UTF8.decode(this.bytes.subarray(start, start + length));
    } catch {
      throw new BinaryError(`name at byte ${start} is not valid UTF-8`);
    }
  }
}

export function encodeU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

export function encodeS64(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const signBit = (b & 0x40) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

export function encodeName(name: string): number[] {
  const bytes = new TextEncoder().encode(name);
  return [...encodeU32(bytes.length), ...bytes];
}

/** Concatenates byte chunks into one buffer. */
export function concat(chunks: (Uint8Array | number[])[]): Uint8Array {
  let length = 0;
  for (const c of chunks) length += c.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * An append-only byte buffer that grows by doubling up to a hard cap, so writing n bytes costs O(n) time and
 * at most 2n memory, with no object per write. Sizes can be written before their content is known: a
 * placeholder of five bytes is patched with a padded LEB128 (valid in the binary format) once the content ends.
 */
export class ByteWriter {
  #buf: Uint8Array;
  pos = 0;
  constructor(
    initial: number,
    /** Called when the content would grow past `max`; must throw. */
    readonly max: number,
    readonly onOverflow: (max: number) => never,
  ) {
    this.#buf = new Uint8Array(Math.max(64, Math.min(initial, max)));
  }

  #ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.#buf.length) return;
    if (need > this.max) this.onOverflow(this.max);
    const next = new Uint8Array(Math.min(this.max, Math.max(need, this.#buf.length * 2)));
    next.set(this.#buf.subarray(0, this.pos));
    this.#buf = next;
  }

  byte(b: number): void {
    this.#ensure(1);
    this.#buf[this.pos++] = b;
  }

  bytes(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    this.#ensure(n);
    const buf = this.#buf;
    // Most spans are a few bytes (one straight-line run): a loop beats making a subarray view for each.
    if (n < 64) for (let i = 0; i < n; i++) buf[this.pos + i] = src[start + i] as number;
    else buf.set(src.subarray(start, end), this.pos);
    this.pos += n;
  }

  u32(value: number): void {
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }

  /** Signed LEB128 of an integer within ±2^53 (fuel charges), without BigInt. */
  s64(value: number): void {
    let v = value;
    for (;;) {
      const b = ((v % 128) + 128) % 128;
      v = Math.floor(v / 128);
      const signBit = (b & 0x40) !== 0;
      if ((v === 0 && !signBit) || (v === -1 && signBit)) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  /** Reserves a five-byte size field; pass the result to {@link endSized} when the content is written. */
  beginSized(): number {
    this.#ensure(5);
    this.pos += 5;
    return this.pos;
  }

  endSized(contentStart: number): void {
    let v = this.pos - contentStart;
    for (let i = 0; i < 5; i++) {
      this.#buf[contentStart - 5 + i] = (v & 0x7f) | (i < 4 ? 0x80 : 0);
      v >>>= 7;
    }
  }

  /** The bytes written, in a buffer of their own size (it may be transferred to another thread). */
  result(): Uint8Array {
    return this.#buf.slice(0, this.pos);
  }
}
