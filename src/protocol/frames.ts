/**
 * The host/runner wire format (docs/PROTOCOL.md), protocol version 1. Every frame:
 *
 *     u32 length      bytes that follow this field (big-endian), at most the receiver's frame limit
 *     u8  type        FrameType
 *     u32 id          call or request id; 0 when the frame has none
 *     u32 metaLength  bytes of JSON metadata that follow
 *     meta            UTF-8 JSON object
 *     body            raw bytes: the rest of the frame (call input and output, module bytes, values)
 *
 * Binary bodies travel as they are (no base64), and metadata is JSON (`JSON.parse` creates no prototypes), so
 * a hostile peer can neither make the receiver allocate past its limit nor reach an object's prototype.
 */
export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 4 + 1 + 4 + 4;

export const FrameType = {
  /** runner -> host, first: {protocol, pluginId, secret} */
  Hello: 1,
  /** host -> runner: {plugin}, body: the module or library bytes */
  Welcome: 2,
  /** runner -> host: {functions} once the plugin is loaded and its init ran */
  Ready: 3,
  /** host -> runner: {fn}, body: input */
  Call: 4,
  /** runner -> host: {fuelConsumed}, body: output */
  Result: 5,
  /** runner -> host: {code, message, details?}; id 0: the sandbox itself failed */
  Error: 6,
  /** runner -> host: {op, args}, body: bytes argument */
  HostCall: 7,
  /** host -> runner: {ok, value?|code, message}, body: bytes result */
  HostReply: 8,
  /** runner -> host: {level, message} */
  Log: 9,
  Ping: 10,
  Pong: 11,
  /** host -> runner: run deactivate, answer Bye, exit */
  Shutdown: 12,
  Bye: 13,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  type: number;
  id: number;
  meta: Record<string, unknown>;
  body: Uint8Array;
}

export class ProtocolError extends Error {}

const EMPTY = new Uint8Array(0);
const NO_META = Buffer.from('{}');

export function encodeFrame(type: FrameType, id: number, meta?: object, body: Uint8Array = EMPTY): Buffer {
  const metaBytes = meta === undefined ? NO_META : Buffer.from(JSON.stringify(meta));
  const frame = Buffer.allocUnsafe(HEADER_BYTES + metaBytes.length + body.length);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(type, 4);
  frame.writeUInt32BE(id >>> 0, 5);
  frame.writeUInt32BE(metaBytes.length, 9);
  metaBytes.copy(frame, HEADER_BYTES);
  if (body.length > 0) frame.set(body, HEADER_BYTES + metaBytes.length);
  return frame;
}

/**
 * Splits a byte stream into frames. A length above `maxFrameBytes`, or a malformed header or metadata, throws
 * ProtocolError before anything of that size is allocated.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(readonly maxFrameBytes: number) {}

  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.#buffered >= 4) {
      const head = this.#peek(4);
      const length = head.readUInt32BE(0);
      if (length > this.maxFrameBytes)
        throw new ProtocolError(`frame of ${length} bytes is above the limit of ${this.maxFrameBytes}`);
      if (length < HEADER_BYTES - 4)
        throw new ProtocolError(`frame of ${length} bytes is shorter than a header`);
      if (this.#buffered < 4 + length) break;
      frames.push(parseFrame(this.#take(4 + length)));
    }
    return frames;
  }

  #peek(n: number): Buffer {
    if ((this.#chunks[0]?.length ?? 0) < n) this.#chunks = [Buffer.concat(this.#chunks, this.#buffered)];
    return this.#chunks[0] as Buffer;
  }

  /** Takes n bytes; the chunks are joined only when a whole frame is there, so each byte is copied once. */
  #take(n: number): Buffer {
    const all =
      this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks, this.#buffered);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered -= n;
    return all.subarray(0, n);
  }
}

function parseFrame(bytes: Buffer): Frame {
  const type = bytes.readUInt8(4);
  const id = bytes.readUInt32BE(5);
  const metaLength = bytes.readUInt32BE(9);
  if (HEADER_BYTES + metaLength > bytes.length)
    throw new ProtocolError(`metadata of ${metaLength} bytes runs past the frame`);
  let meta: unknown;
  try {
    meta = JSON.parse(bytes.toString('utf8', HEADER_BYTES, HEADER_BYTES + metaLength));
  } catch {
    throw new ProtocolError('frame metadata is not JSON');
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta))
    throw new ProtocolError('frame metadata is not a JSON object');
  return { type, id, meta: meta as Record<string, unknown>, body: bytes.subarray(HEADER_BYTES + metaLength) };
}
