/** The size of the largest piece an OutputBuffer copies small writes into. */
export const OUTPUT_PIECE_BYTES = 64 * 1024;
/** The first piece's size; each next piece doubles, up to OUTPUT_PIECE_BYTES. */
const FIRST_PIECE_BYTES = 256;

/**
 * A call's output as a plugin writes it (a command's stdout, reed's output_write, an Extism output), kept in pieces of
 * OUTPUT_PIECE_BYTES that writes are copied into, never one object per write: a loop of one-byte writes made the
 * host hold a typed array of its own per byte, ~200 bytes of the host's heap each (16 MiB of output, the default
 * max_output_bytes, took 3.5 GB of heap in mode none, where that heap is the host's). What it holds is the bytes
 * written plus at most one piece.
 *
 * The first write of a call, and any write of a piece or more, is kept as one exact copy of its own: most calls
 * write their output once, and that copy is then the output itself (a 64 KiB piece made and zeroed for a 64-byte
 * echo cost mode none's call 20 times its time). Pieces start small and double, so a short run of small writes
 * does not pay for a whole piece either.
 */
export class OutputBuffer {
  #pieces: Uint8Array[] = [];
  #tail: Uint8Array | undefined;
  #used = 0;
  #nextPiece = FIRST_PIECE_BYTES;

  /** Copies `bytes[from, to)` in. */
  append(bytes: Uint8Array, from = 0, to = bytes.length): void {
    const n = to - from;
    if (n <= 0) return;
    if ((this.#pieces.length === 0 && this.#tail === undefined) || n >= OUTPUT_PIECE_BYTES) {
      this.adopt(bytes.slice(from, to));
      return;
    }
    let at = from;
    while (at < to) {
      if (this.#tail === undefined || this.#used === this.#tail.length) {
        this.#seal();
        this.#tail = new Uint8Array(this.#nextPiece);
        this.#nextPiece = Math.min(OUTPUT_PIECE_BYTES, this.#nextPiece * 2);
      }
      const take = Math.min(to - at, this.#tail.length - this.#used);
      this.#tail.set(bytes.subarray(at, at + take), this.#used);
      this.#used += take;
      at += take;
    }
  }

  /** Keeps `bytes` as they are (a copy the caller made and gives up), after what was written before. */
  adopt(bytes: Uint8Array): void {
    this.#seal();
    if (bytes.length > 0) this.#pieces.push(bytes);
  }

  /** Empty again, for the next call (its pieces let go: what `take` returned is the caller's). */
  reset(): void {
    while (this.#pieces.length > 0) this.#pieces.pop();
    this.#tail = undefined;
    this.#used = 0;
    this.#nextPiece = FIRST_PIECE_BYTES;
  }

  /** Everything written, in order, as one array. */
  take(): Uint8Array {
    this.#seal();
    if (this.#pieces.length === 1) return this.#pieces[0] as Uint8Array;
    return Buffer.concat(this.#pieces);
  }

  /** The tail piece joins the others, cut to what was written in it. */
  #seal(): void {
    if (this.#tail !== undefined && this.#used > 0) {
      this.#pieces.push(this.#used === this.#tail.length ? this.#tail : this.#tail.slice(0, this.#used));
    }
    this.#tail = undefined;
    this.#used = 0;
  }
}
