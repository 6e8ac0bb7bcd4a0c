import { ReedError } from '../../errors.js';

/** One memory block: `length` bytes at `start` in the arena, within `capacity` reserved ones. */
export interface Block {
  readonly start: number;
  readonly length: number;
  readonly capacity: number;
  live: boolean;
}

/** The first offset handed out: 0 means "none" in Extism's ABI. */
export const ARENA_BASE = 8;
/** What each block counts against the arena's cap besides its bytes (the host's bookkeeping of it). */
export const BLOCK_OVERHEAD_BYTES = 64;
const FIRST_ARENA_BYTES = 64 * 1024;
/**
 * Whether typed arrays are little-endian here (as Extism's, WASM's, byte order is): then an aligned u64 is read
 * and written through a BigUint64Array, several times cheaper per access than a DataView's BigInt methods.
 */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** `words` serves offsets below this (its index is `p >>> 3`, which is exact below 2^32). */
const WORDS_BELOW = 2 ** 32;
/** `n` rounded up to a multiple of 8 (arithmetic, not bitwise: `n` may be far above 2^32). */
const align8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * The memory blocks of an Extism plugin (extism-kernel.ts), ours: a byte array on the host that the plugin reaches
 * only through the kernel's functions, with offsets starting at ARENA_BASE (0 is "none"). Its extent, [ARENA_BASE,
 * bytes.length), is FIRST_ARENA_BYTES at first and doubles as blocks need, never past the cap. At most `maxBytes`
 * are handed out, BLOCK_OVERHEAD_BYTES counted per block besides its bytes (extism_memory_limit past it). Blocks are
 * bumped in order; a freed block is reused by a later one of the same size, or given back to the bump pointer when
 * it is the last; a block is zeroed when it is handed out. Loads and stores anywhere inside the extent work, as in
 * Extism's kernel (its memory): the arena holds only this instance's own blocks and is all zeros again after each
 * reset; a load outside answers 0 and a store outside does nothing, as Extism's answers. Bytes are charged before
 * they are allocated, zeroed or copied.
 */
export class ExtismArena {
  /** The arena's bytes, its extent; replaced when it grows. */
  bytes: Uint8Array;
  /** Views of `bytes` for 64-bit loads and stores: `words` at offsets that are multiples of 8 (little-endian only). */
  view: DataView;
  words: BigUint64Array;
  /** Live and freed blocks, by start: the order they were bumped in. */
  #blocks: Block[] = [];
  /** Freed blocks by capacity, for reuse (an entry no longer in #blocks is stale and skipped). */
  readonly #free = new Map<number, Block[]>();
  #top = ARENA_BASE;
  /** Bytes at and past this offset are zero (never written since the last reset). */
  #clean = ARENA_BASE;

  constructor(
    readonly pluginId: string,
    readonly maxBytes: number,
    readonly charge: (fuel: number) => void,
  ) {
    this.bytes = new Uint8Array(Math.min(FIRST_ARENA_BYTES, maxBytes + ARENA_BASE));
    this.view = new DataView(this.bytes.buffer);
    this.words = new BigUint64Array(this.bytes.buffer, 0, Math.floor(this.bytes.length / 8));
  }

  /** The bytes of the extent past ARENA_BASE, what memory_bytes answers (as Extism's, its memory's length). */
  get size(): number {
    return this.bytes.length - ARENA_BASE;
  }

  /** Frees every block and zeroes every byte written since the last reset: the arena is as new. */
  reset(): void {
    const blocks = this.#blocks;
    while (blocks.length > 0) blocks.pop(); // cheaper than setting the length, for the few blocks of most calls
    if (this.#free.size > 0) this.#free.clear();
    this.#top = ARENA_BASE;
    if (this.#clean > ARENA_BASE) {
      this.bytes.fill(0, ARENA_BASE, this.#clean);
      this.#clean = ARENA_BASE;
    }
  }

  /** Whether `[p, p+n)` lies inside the extent (`p` from a plugin: any number, NaN and negatives included). */
  inside(p: number, n: number): boolean {
    return p >= ARENA_BASE && p + n <= this.bytes.length;
  }

  /** The byte at `p`, or 0 outside the extent (not charged: see the kernel). */
  loadU8(p: number): number {
    return p >= ARENA_BASE && p < this.bytes.length ? (this.bytes[p] as number) : 0;
  }

  /** The little-endian u64 at `p`, or 0 outside the extent. */
  loadU64(p: number): bigint {
    if (!(p >= ARENA_BASE && p + 8 <= this.bytes.length)) return 0n;
    return LITTLE_ENDIAN && (p & 7) === 0 && p < WORDS_BELOW
      ? (this.words[p >>> 3] as bigint)
      : this.view.getBigUint64(p, true);
  }

  /** Stores a byte at `p`; nothing outside the extent. */
  storeU8(p: number, value: number): void {
    if (!(p >= ARENA_BASE && p < this.bytes.length)) return;
    this.bytes[p] = value;
    if (p >= this.#clean) this.#grew(p + 1);
  }

  /** Stores a little-endian u64 at `p`; nothing outside the extent. */
  storeU64(p: number, value: bigint): void {
    if (!(p >= ARENA_BASE && p + 8 <= this.bytes.length)) return;
    if (LITTLE_ENDIAN && (p & 7) === 0 && p < WORDS_BELOW) this.words[p >>> 3] = value;
    else this.view.setBigUint64(p, value, true);
    if (p + 8 > this.#clean) this.#grew(p + 8);
  }

  /**
   * A store reached `end`, past every byte written since the last reset: reset will zero up to there, so the bytes
   * in between are charged now (a single store far into a grown arena made the host zero all of it when the call
   * ended, for one byte's fuel; found by the adversarial pass H10).
   */
  #grew(end: number): void {
    const gap = end - this.#clean;
    this.#clean = end;
    this.charge(gap);
  }

  /**
   * A new block of `n` bytes, charged, zeroed unless `zero` is false (the caller fills all of it at once); undefined
   * for 0 bytes (Extism's alloc(0) answers 0).
   */
  alloc(n: number, zero = true): Block | undefined {
    if (n === 0) return undefined;
    const capacity = align8(n);
    const used = this.#top - ARENA_BASE + this.#blocks.length * BLOCK_OVERHEAD_BYTES;
    if (!(n > 0) || used + capacity + BLOCK_OVERHEAD_BYTES > this.maxBytes) {
      throw new ReedError(
        'extism_memory_limit',
        `plugin "${this.pluginId}" asked for an Extism memory block of ${n} bytes with ${used} in use; its blocks may hold ${this.maxBytes} bytes (limits.memory_mb, ${BLOCK_OVERHEAD_BYTES} bytes counted per block)`,
        { pluginId: this.pluginId },
      );
    }
    this.charge(n);
    const reused = this.#free.size === 0 ? undefined : this.#reuse(capacity, n, zero);
    if (reused !== undefined) return reused;
    const start = this.#top;
    const end = start + capacity;
    if (end > this.bytes.length) this.#grow(end);
    if (start < this.#clean) this.bytes.fill(0, zero ? start : start + n, Math.min(end, this.#clean));
    this.#clean = Math.max(this.#clean, end);
    this.#top = end;
    const block: Block = { start, length: n, capacity, live: true };
    this.#blocks.push(block);
    return block;
  }

  /** A new block holding `data` (0 for none), charged; its offset. */
  give(data: Uint8Array): number {
    const block = this.alloc(data.length, false);
    if (block === undefined) return 0;
    this.charge(data.length);
    this.bytes.set(data, block.start);
    return block.start;
  }

  /** Frees the live block starting at `at`, and returns it; anything else (0, freed, not a block) is left alone. */
  free(at: number): Block | undefined {
    const block = this.blockAt(at);
    if (block === undefined) return undefined;
    block.live = false;
    // The last blocks, once free, go back to the bump pointer; any other waits for a block of its size.
    if (block === this.#blocks[this.#blocks.length - 1]) {
      while (this.#blocks.length > 0 && !(this.#blocks[this.#blocks.length - 1] as Block).live) {
        this.#top = (this.#blocks.pop() as Block).start;
      }
      return block;
    }
    const list = this.#free.get(block.capacity);
    if (list === undefined) this.#free.set(block.capacity, [block]);
    else list.push(block);
    return block;
  }

  /** The live block that starts at `at`, if any (a handle: what alloc returned). */
  blockAt(at: number): Block | undefined {
    if (!(at >= ARENA_BASE && at < this.#top)) return undefined;
    const block = this.#blocks[this.#indexOf(at)];
    return block?.live === true ? block : undefined;
  }

  /** The live block that starts at `at`, or wasm_out_of_bounds: a handle a kernel function takes. */
  handle(at: number, what: string): Block {
    const block = this.blockAt(at);
    if (block === undefined)
      throw this.outOfBounds(`passed ${at} to ${what}, which is not a live memory block`);
    return block;
  }

  /** A block's first `max` bytes, charged (a view: copy what is kept). */
  read(block: Block, max = block.length): Uint8Array {
    const n = Math.min(block.length, max);
    this.charge(n);
    return this.bytes.subarray(block.start, block.start + n);
  }

  outOfBounds(what: string): ReedError {
    return new ReedError('wasm_out_of_bounds', `plugin "${this.pluginId}" ${what}`, {
      pluginId: this.pluginId,
    });
  }

  /** A freed block of exactly `capacity`, still in place, made live again for `n` bytes (zeroed past what is filled). */
  #reuse(capacity: number, n: number, zero: boolean): Block | undefined {
    const list = this.#free.get(capacity);
    while (list !== undefined && list.length > 0) {
      const old = list.pop() as Block;
      const index = this.#indexOf(old.start);
      if (index < 0 || this.#blocks[index] !== old) continue; // given back to the bump pointer since
      const block: Block = { start: old.start, length: n, capacity, live: true };
      this.#blocks[index] = block;
      this.bytes.fill(0, zero ? block.start : block.start + n, block.start + capacity);
      return block;
    }
    return undefined;
  }

  #grow(end: number): void {
    let size = Math.max(this.bytes.length * 2, FIRST_ARENA_BYTES);
    while (size < end) size *= 2;
    size = Math.min(size, this.maxBytes + ARENA_BASE);
    this.charge(this.bytes.length); // the copy
    const grown = new Uint8Array(size);
    grown.set(this.bytes);
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
    this.words = new BigUint64Array(grown.buffer, 0, Math.floor(grown.length / 8));
  }

  /** The index in #blocks of the block starting at `start`, or -1. */
  #indexOf(start: number): number {
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = (blocks[mid] as Block).start;
      if (s === start) return mid;
      if (s < start) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}
