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
 * Metadata is bounded in depth (MAX_META_DEPTH) and, per frame type, in size (META_BYTES), before it is parsed.
 */
import { jsonTooDeep, MAX_DATA_DEPTH } from '../manifest/config-check.js';

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 4 + 1 + 4 + 4;

export const FrameType = {
  /** runner -> host, first: {protocol, pluginId, secret} */
  Hello: 1,
  /** host -> runner: {plugin}, body: the module or library bytes */
  Welcome: 2,
  /** runner -> host: {functions} once the plugin is loaded and its init ran */
  Ready: 3,
  /** host -> runner: {fn, wasi?}, body: input */
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

/**
 * The deepest metadata of any frame: a Welcome's `plugin.configuration` holds values MAX_DATA_DEPTH deep, three
 * levels down. JSON.parse is iterative and takes any depth, but whatever serializes the value later (an error's
 * details in an API answer, a log line) recurses: a runner's `details` nested 100,000 deep crashed `serve`.
 */
export const MAX_META_DEPTH = MAX_DATA_DEPTH + 4;

const KiB = 1024;
const MiB = 1024 * KiB;
/**
 * The largest metadata per frame type, checked before it is parsed; a frame of an unknown type is refused.
 * Infinity: bounded by the frame limit only, for the frames whose metadata carries a plugin's data (a Welcome's
 * spec and configuration, a HostCall's arguments, a HostReply's values). The others hold a few small fields:
 * their bounds leave room for JSON's escaping of the longest text the protocol puts there (a Log message of
 * MAX_LOG_MESSAGE characters, an Error message of MAX_ERROR_MESSAGE and its MAX_DETAILS_BYTES of details).
 */
export const META_BYTES: Readonly<Record<number, number>> = Object.freeze({
  [FrameType.Hello]: 4 * KiB,
  [FrameType.Welcome]: Number.POSITIVE_INFINITY,
  [FrameType.Ready]: 8 * MiB,
  // A call's WASI args and env are 64 KiB of text at most (src/runtime/call-wasi.ts), up to 6 times that as JSON.
  [FrameType.Call]: 512 * KiB,
  [FrameType.Result]: 4 * KiB,
  [FrameType.Error]: 64 * KiB,
  [FrameType.HostCall]: Number.POSITIVE_INFINITY,
  [FrameType.HostReply]: Number.POSITIVE_INFINITY,
  [FrameType.Log]: 512 * KiB,
  [FrameType.Ping]: 256,
  [FrameType.Pong]: 256,
  [FrameType.Shutdown]: 256,
  [FrameType.Bye]: 256,
});

/** The longest Log message a runner sends and the host passes on (the ceiling of limits.log_line_bytes). */
export const MAX_LOG_MESSAGE = 65_536;
/** The longest Error message a runner sends and the host keeps. */
export const MAX_ERROR_MESSAGE = 8_192;
/** An Error's details are kept when their JSON is at most this long and this deep (flat facts: a code, a status). */
export const MAX_DETAILS_BYTES = 2_048;
export const MAX_DETAILS_DEPTH = 2;

export interface Frame {
  type: number;
  id: number;
  meta: Record<string, unknown>;
  body: Uint8Array;
}

export class ProtocolError extends Error {}

const EMPTY = new Uint8Array(0);
export function encodeFrame(type: FrameType, id: number, meta?: object, body: Uint8Array = EMPTY): Buffer {
  // The metadata's text is written straight into the frame, not first into a Buffer of its own that is then
  // copied: one allocation and one copy fewer on every frame (~10 % of encodeFrame's CPU for a 64 B Result).
  const text = meta === undefined ? '{}' : JSON.stringify(meta);
  const metaLength = Buffer.byteLength(text);
  const frame = Buffer.allocUnsafe(HEADER_BYTES + metaLength + body.length);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(type, 4);
  frame.writeUInt32BE(id >>> 0, 5);
  frame.writeUInt32BE(metaLength, 9);
  frame.write(text, HEADER_BYTES, 'utf8');
  if (body.length > 0) frame.set(body, HEADER_BYTES + metaLength);
  return frame;
}

/**
 * Largest frame a runner accepts from the host unless REED_MAX_FRAME says otherwise: above the largest Welcome the
 * host's default caps allow (a 256 MiB plugin file, discovery's max_file_bytes, plus its spec) and far below a
 * frame length's 4 GiB. The host is the trusted side; the bound keeps a corrupted stream from having the runner
 * wait on, or allocate for, a frame it could never hold.
 */
export const MAX_FRAME_FROM_HOST = 320 * 1024 * 1024;

/**
 * Splits a byte stream into frames. A length above `maxFrameBytes`, or a malformed header or metadata, throws
 * ProtocolError before anything of that size is allocated. Whatever the sender's chunking (a frame in a million
 * one-byte writes), it holds at most one frame's bytes and four header bytes, in one buffer: a frame that
 * arrives whole in a chunk is used in place, a frame in pieces is copied once into a buffer of its size.
 */
export class FrameDecoder {
  readonly #head = Buffer.alloc(4);
  #headLen = 0;
  #frame: Buffer | undefined;
  #filled = 0;

  constructor(readonly maxFrameBytes: number) {}

  /** Whether part of a frame has been read and waits for the rest. */
  get pending(): boolean {
    return this.#frame !== undefined || this.#headLen > 0;
  }

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.#frame === undefined) {
        if (this.#headLen === 0 && chunk.length - at >= 4) {
          const length = this.#check(chunk.readUInt32BE(at));
          if (chunk.length - at >= 4 + length) {
            frames.push(parseFrame(chunk.subarray(at, at + 4 + length)));
            at += 4 + length;
            continue;
          }
          this.#start(length);
          at += 4;
        } else {
          const take = Math.min(4 - this.#headLen, chunk.length - at);
          chunk.copy(this.#head, this.#headLen, at, at + take);
          this.#headLen += take;
          at += take;
          if (this.#headLen < 4) break;
          this.#headLen = 0;
          this.#start(this.#check(this.#head.readUInt32BE(0)));
          continue;
        }
      }
      const frame = this.#frame as Buffer;
      const take = Math.min(frame.length - this.#filled, chunk.length - at);
      chunk.copy(frame, this.#filled, at, at + take);
      this.#filled += take;
      at += take;
      if (this.#filled === frame.length) {
        this.#frame = undefined;
        frames.push(parseFrame(frame));
      }
    }
    return frames;
  }

  #check(length: number): number {
    if (length > this.maxFrameBytes)
      throw new ProtocolError(`frame of ${length} bytes is above the limit of ${this.maxFrameBytes}`);
    if (length < HEADER_BYTES - 4)
      throw new ProtocolError(`frame of ${length} bytes is shorter than a header`);
    return length;
  }

  /** A buffer for a frame of `length` (checked) whose bytes come in pieces; its length field is filled in. */
  #start(length: number): void {
    const frame = Buffer.allocUnsafe(4 + length);
    frame.writeUInt32BE(length, 0);
    this.#frame = frame;
    this.#filled = 4;
  }
}

function parseFrame(bytes: Buffer): Frame {
  const type = bytes.readUInt8(4);
  const id = bytes.readUInt32BE(5);
  const metaLength = bytes.readUInt32BE(9);
  if (HEADER_BYTES + metaLength > bytes.length)
    throw new ProtocolError(`metadata of ${metaLength} bytes runs past the frame`);
  const maxMeta = META_BYTES[type];
  if (maxMeta === undefined) throw new ProtocolError(`frame type ${type} is not one of the protocol's`);
  if (metaLength > maxMeta)
    throw new ProtocolError(`metadata of ${metaLength} bytes on a frame of type ${type}; at most ${maxMeta}`);
  const text = bytes.toString('utf8', HEADER_BYTES, HEADER_BYTES + metaLength);
  if (jsonTooDeep(text, MAX_META_DEPTH))
    throw new ProtocolError(`frame metadata nests deeper than ${MAX_META_DEPTH} levels`);
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch {
    throw new ProtocolError('frame metadata is not JSON');
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta))
    throw new ProtocolError('frame metadata is not a JSON object');
  return { type, id, meta: meta as Record<string, unknown>, body: bytes.subarray(HEADER_BYTES + metaLength) };
}
