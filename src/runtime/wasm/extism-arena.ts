import { ReedError } from '../../errors.js';
import { type ExtismFast, extismFast } from './extism-fast.js';

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
const PAGE = 64 * 1024;
/** The most pages an arena grows to: its offsets, and every end of a range in it, stay below 2^32. */
const MAX_PAGES = 65_535;
/**
 * Whether typed arrays are little-endian here (as WASM's, and so Extism's, byte order is): then an aligned u64 of
 * the input is read through a BigUint64Array, several times cheaper than a DataView's BigInt method.
 */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** `n` rounded up to a multiple of 8 (arithmetic, not bitwise: `n` may be far above 2^32). */
const align8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * The memory blocks of an Extism plugin (extism-kernel.ts), ours: a WebAssembly memory of its own that the plugin
 * reaches only through the kernel's functions, with offsets starting at ARENA_BASE (0 is "none"). Its loads and
 * stores are WebAssembly (extism-fast.wat: `fast`), the rest is here. Its extent, [ARENA_BASE, bytes.length), is one
 * 64 KiB page at first and doubles as blocks need, up to the cap rounded up to a page. At most `maxBytes` are
 * handed out, BLOCK_OVERHEAD_BYTES counted per block besides its bytes (extism_memory_limit past it). Blocks are
 * bumped in order; a freed block is reused by a later one of the same size, or given back to the bump pointer when
 * it is the last; a block is zeroed when it is handed out. Loads and stores anywhere inside the extent work, as in
 * Extism's kernel (its memory): the arena holds only this instance's own blocks and is all zeros again after each
 * reset; a load outside answers 0 and a store outside does nothing, as Extism's answers. Bytes are charged before
 * they are allocated, zeroed or copied, and a store past every byte written since the last reset pays for the
 * bytes up to it (the reset zeroes them).
 */
export class ExtismArena {
  /** The arena's bytes, its extent: a view of `memory`, made again when it grows. */
  bytes: Uint8Array;
  /** Its loads and stores, and its reset. */
  readonly fast: ExtismFast;
  /** The most bytes its blocks may hold (limits.memory_mb, within what MAX_PAGES allow). */
  readonly maxBytes: number;
  readonly #memory: WebAssembly.Memory;
  readonly #maxPages: number;
  /** Live and freed blocks, by start: the order they were bumped in. */
  #blocks: Block[] = [];
  /** Freed blocks by capacity, for reuse (an entry no longer in #blocks is stale and skipped). */
  readonly #free = new Map<number, Block[]>();
  #top = ARENA_BASE;
  /** The furthest end of a block since the last reset: what this side wrote lies below it (`fast` knows its own). */
  #high = ARENA_BASE;

  /**
   * `charge`: the host work about to be done (ExtismIo.charge); `pay`: fuel the loads and stores owe, with the
   * guard's checks (ExtismIo.enter).
   */
  constructor(
    readonly pluginId: string,
    maxBytes: number,
    readonly charge: (fuel: number) => void,
    pay: (fuel: number) => void,
  ) {
    this.#maxPages = Math.min(MAX_PAGES, Math.ceil((maxBytes + ARENA_BASE) / PAGE));
    this.maxBytes = Math.min(maxBytes, this.#maxPages * PAGE - ARENA_BASE);
    this.#memory = new WebAssembly.Memory({ initial: 1, maximum: this.#maxPages });
    this.bytes = new Uint8Array(this.#memory.buffer);
    // What `fast` owes arrives as an i32: below 2^32 (a store's gap is below the extent), so read unsigned.
    this.fast = extismFast(this.#memory, (fuel) => pay(fuel >>> 0));
  }

  /** The bytes of the extent past ARENA_BASE, what memory_bytes answers (as Extism's, its memory's length). */
  get size(): number {
    return this.bytes.length - ARENA_BASE;
  }

  /** The fuel the loads and stores owe, now the caller's to pay. */
  takeDebt(): number {
    return this.fast.take_debt() >>> 0;
  }

  /** Frees every block and zeroes every byte written since the last reset: the arena is as new. */
  reset(): void {
    const blocks = this.#blocks;
    while (blocks.length > 0) blocks.pop(); // cheaper than setting the length, for the few blocks of most calls
    if (this.#free.size > 0) this.#free.clear();
    this.#top = ARENA_BASE;
    this.fast.reset(this.#high);
    this.#high = ARENA_BASE;
  }

  /** Whether `[p, p+n)` lies inside the extent (`p` from a plugin: any number, NaN and negatives included). */
  inside(p: number, n: number): boolean {
    return p >= ARENA_BASE && p + n <= this.bytes.length;
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
    // A store may have reached past the bump pointer (charged then), so the block is zeroed, as a reused one is.
    this.bytes.fill(0, zero ? start : start + n, end);
    if (end > this.#high) this.#high = end;
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

  /** Grows the extent to hold `end` (doubling, up to the cap): the new pages are charged. */
  #grow(end: number): void {
    const pages = this.bytes.length / PAGE;
    let want = Math.max(pages * 2, 1);
    while (want * PAGE < end) want *= 2;
    want = Math.min(want, this.#maxPages);
    this.charge((want - pages) * PAGE);
    try {
      this.#memory.grow(want - pages);
    } catch (error) {
      throw new ReedError(
        'extism_memory_limit',
        `plugin "${this.pluginId}" needs its Extism memory blocks to grow to ${want * PAGE} bytes, which the host could not allocate: ${(error as Error).message}`,
        { pluginId: this.pluginId },
      );
    }
    this.bytes = new Uint8Array(this.#memory.buffer);
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
