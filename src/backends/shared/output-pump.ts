import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { escapeUnprintable } from '../../safe-text.js';

/** Longest runner output line passed on; the rest of a longer line is dropped and the line marked. */
export const MAX_OUTPUT_LINE_BYTES = 8 * 1024;
/** Runner output passed on per second, per sandbox, after a burst of OUTPUT_BURST_BYTES; the rest is dropped. */
export const OUTPUT_BYTES_PER_SECOND = 64 * 1024;
export const OUTPUT_BURST_BYTES = 1024 * 1024;
/** What one line costs of the budget at least, so a flood of empty lines is bounded like one of long ones. */
const MIN_LINE_COST = 128;
/** At most one `output_truncated` warning per this long (the first one at once). */
const WARN_EVERY_MS = 60_000;

export type OutputStream = 1 | 2;

export interface OutputPumpOptions {
  pluginId: string;
  logger: Logger;
  /** Called with each line (without its newline), `1` for stdout and `2` for stderr. */
  onLine: (stream: OutputStream, line: string) => void;
  maxLineBytes?: number;
  bytesPerSecond?: number;
  burstBytes?: number;
}

interface LineState {
  buf: Buffer;
  len: number;
  /** The rest of the current line is dropped: it passed the cap, or began over budget. */
  skipping: boolean;
}

/**
 * The host's reader of a runner's stdout and stderr (process mode's pipes, container mode's attach stream): one
 * bounded line splitter for both. Whatever the runner writes (no newline ever, gigabytes, binary, \r floods),
 * the pump holds at most one line's cap per stream: a longer line is passed on at the cap, marked, and the rest
 * of it dropped unread. Lines are passed on within a byte budget (a token bucket per sandbox); over it, whole
 * chunks are dropped without being scanned. Cuts and drops are reported once in a while with the code
 * `output_truncated`, never per line.
 */
export class OutputPump {
  readonly #o: Required<OutputPumpOptions>;
  readonly #lines: Record<OutputStream, LineState>;
  #tokens: number;
  #refilledAt = performance.now();
  #droppedBytes = 0;
  #cutLines = 0;
  #warnedAt = Number.NEGATIVE_INFINITY;

  constructor(options: OutputPumpOptions) {
    this.#o = {
      maxLineBytes: MAX_OUTPUT_LINE_BYTES,
      bytesPerSecond: OUTPUT_BYTES_PER_SECOND,
      burstBytes: OUTPUT_BURST_BYTES,
      ...options,
    };
    const fresh = (): LineState => ({ buf: Buffer.alloc(0), len: 0, skipping: false });
    this.#lines = { 1: fresh(), 2: fresh() };
    this.#tokens = this.#o.burstBytes;
  }

  /** Reads `readable` to its end as `stream` (flowing: nothing piles up in the stream either). */
  attach(readable: Readable, stream: OutputStream): void {
    readable.on('data', (chunk: Buffer | string) =>
      this.push(stream, typeof chunk === 'string' ? Buffer.from(chunk) : chunk),
    );
    readable.on('end', () => this.end(stream));
    readable.on('error', () => this.end(stream));
  }

  push(stream: OutputStream, chunk: Buffer): void {
    const s = this.#lines[stream];
    let at = 0;
    while (at < chunk.length) {
      if (s.skipping) {
        // The rest of a dropped line, to its newline, without copying.
        const nl = chunk.indexOf(10, at);
        const upto = nl < 0 ? chunk.length : nl + 1;
        this.#droppedBytes += upto - at;
        at = upto;
        if (nl >= 0) s.skipping = false;
        continue;
      }
      if (s.len === 0 && !this.#refill()) {
        // Over budget: the rest of the chunk is dropped unscanned (constant work per chunk, whatever is in it).
        this.#droppedBytes += chunk.length - at;
        s.skipping = chunk[chunk.length - 1] !== 10;
        break;
      }
      const nl = chunk.indexOf(10, at);
      const end = nl < 0 ? chunk.length : nl;
      const room = this.#o.maxLineBytes - s.len;
      if (end - at > room) {
        // Past the cap: pass on what fits now, marked, and drop the rest of the line.
        this.#append(s, chunk, at, at + room);
        this.#emit(stream, s, true);
        s.skipping = true;
        at += room;
        continue;
      }
      this.#append(s, chunk, at, end);
      if (nl < 0) break;
      this.#emit(stream, s, false);
      at = nl + 1;
    }
    this.#maybeWarn();
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(stream: OutputStream): void {
    const s = this.#lines[stream];
    if (s.len > 0) this.#emit(stream, s, false);
    s.skipping = false;
    s.buf = Buffer.alloc(0);
    this.#maybeWarn();
  }

  #append(s: LineState, chunk: Buffer, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    if (s.buf.length < s.len + n) {
      const grown = Buffer.allocUnsafe(Math.min(this.#o.maxLineBytes, Math.max(256, (s.len + n) * 2)));
      s.buf.copy(grown, 0, 0, s.len);
      s.buf = grown;
    }
    chunk.copy(s.buf, s.len, from, to);
    s.len += n;
  }

  #emit(stream: OutputStream, s: LineState, cut: boolean): void {
    let len = s.len;
    if (!cut && len > 0 && s.buf[len - 1] === 13) len--; // \r\n
    // Escaped (src/safe-text.ts): a runner's output line can neither paint a terminal nor pass for another line.
    // An escape is six characters: the escaped line is cut at the cap again, in characters.
    let text = escapeUnprintable(s.buf.toString('utf8', 0, len));
    if (text.length > this.#o.maxLineBytes) {
      text = text.slice(0, this.#o.maxLineBytes);
      cut = true;
    }
    this.#tokens -= Math.max(MIN_LINE_COST, s.len);
    s.len = 0;
    if (cut) this.#cutLines++;
    this.#o.onLine(stream, cut ? `${text}... [line cut at ${this.#o.maxLineBytes} bytes]` : text);
  }

  /** Adds what the elapsed time earned; true while there is budget for a line. */
  #refill(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(
      this.#o.burstBytes,
      this.#tokens + ((now - this.#refilledAt) * this.#o.bytesPerSecond) / 1000,
    );
    this.#refilledAt = now;
    return this.#tokens > 0;
  }

  #maybeWarn(): void {
    if (this.#droppedBytes === 0 && this.#cutLines === 0) return;
    const now = performance.now();
    if (now - this.#warnedAt < WARN_EVERY_MS) return;
    this.#warnedAt = now;
    this.#o.logger.warn(
      {
        pluginId: this.#o.pluginId,
        code: 'output_truncated',
        droppedBytes: this.#droppedBytes,
        cutLines: this.#cutLines,
      },
      `the runner of plugin "${this.#o.pluginId}" wrote more to stdout/stderr than the host keeps (lines over ${this.#o.maxLineBytes} bytes are cut; over ${this.#o.bytesPerSecond} bytes/s, output is dropped); its own log lines go through the plugin log API instead`,
    );
    this.#droppedBytes = 0;
    this.#cutLines = 0;
  }
}

/**
 * Docker's multiplexed attach stream (per frame an 8-byte header: stream, 0, 0, 0, u32 size; then the bytes),
 * split into stdout and stderr for a pump without holding a frame's payload: only a header is ever buffered.
 * (dockerode's demuxStream concatenates until a whole frame is there.)
 */
export class DockerDemux {
  #header = Buffer.alloc(8);
  #headerLen = 0;
  #remaining = 0;
  #stream: OutputStream = 1;

  constructor(readonly pump: OutputPump) {}

  attach(readable: Readable): void {
    readable.on('data', (chunk: Buffer) => this.push(chunk));
    readable.on('end', () => this.end());
    readable.on('error', () => this.end());
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#remaining === 0) {
        const take = Math.min(8 - this.#headerLen, chunk.length - at);
        chunk.copy(this.#header, this.#headerLen, at, at + take);
        this.#headerLen += take;
        at += take;
        if (this.#headerLen < 8) return;
        this.#headerLen = 0;
        this.#stream = this.#header[0] === 2 ? 2 : 1;
        this.#remaining = this.#header.readUInt32BE(4);
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      this.pump.push(this.#stream, chunk.subarray(at, at + take));
      this.#remaining -= take;
      at += take;
    }
  }

  end(): void {
    this.pump.end(1);
    this.pump.end(2);
  }
}
