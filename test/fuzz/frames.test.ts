// Fuzzing the frame decoder at both ends (issue 17): generated and mutated streams of frames, cut into arbitrary
// chunks. The decoder answers frames or a ProtocolError, never anything else, never allocates past its limit; the
// host's end (RunnerLink over a real Unix socket) ends a runner that sends anything wrong with a coded ReedError,
// settles every call it had waiting, and never throws; the runner's end reads the host's replies without a throw.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RunnerLink } from '../../src/backends/shared/runner-link.js';
import { isCode } from '../../src/codes.js';
import { ReedError } from '../../src/errors.js';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_FROM_HOST,
  PROTOCOL_VERSION,
  ProtocolError,
} from '../../src/protocol/frames.js';
import { readHostReply } from '../../src/protocol/host-calls.js';
import { checkCallWasi } from '../../src/runtime/call-wasi.js';
import { HOST_FUNCTIONS, type HostApi } from '../../src/runtime/host-api.js';
import { chunked, fuzz, mutated } from '../helpers/fuzz.js';

const TYPES = Object.values(FrameType) as number[];
const json = fc.jsonValue({ maxDepth: 4 });
const metaObject = fc.dictionary(fc.string({ maxLength: 12 }), json, { maxKeys: 5 });
const anyType = fc.oneof(fc.constantFrom(...TYPES), fc.integer({ min: 0, max: 255 }));
const body = fc.uint8Array({ maxLength: 256 });

interface Spec {
  type: number;
  id: number;
  meta: Record<string, unknown>;
  body: Uint8Array;
}
const spec: fc.Arbitrary<Spec> = fc.record({
  type: anyType,
  id: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.nat({ max: 0xffffffff })),
  meta: metaObject,
  body,
});
const encode = (frames: Spec[]) =>
  Buffer.concat(frames.map((f) => encodeFrame(f.type as FrameType, f.id, f.meta, f.body)));

/** Pushes `chunks` through a decoder of `limit`: the frames, the ProtocolError if any, the largest buffer it asked for. */
function decode(limit: number, chunks: Buffer[]): { frames: Frame[]; error?: unknown; largest: number } {
  const decoder = new FrameDecoder(limit);
  const frames: Frame[] = [];
  let largest = 0;
  const allocUnsafe = Buffer.allocUnsafe;
  const spy = vi.spyOn(Buffer, 'allocUnsafe').mockImplementation((size: number) => {
    largest = Math.max(largest, size);
    return allocUnsafe(size);
  });
  try {
    for (const chunk of chunks) frames.push(...decoder.push(chunk));
    return { frames, largest };
  } catch (error) {
    return { frames, error, largest };
  } finally {
    spy.mockRestore();
  }
}

describe('the frame decoder', () => {
  it('gives back every valid frame whatever the chunking', async () => {
    await fuzz(
      'frames: valid streams, any chunking',
      300,
      fc.property(
        fc.array(
          spec.filter((f) => TYPES.includes(f.type)).map((f) => ({ ...f, meta: {} as Spec['meta'] })),
          {
            maxLength: 6,
          },
        ),
        fc.array(fc.nat(), { maxLength: 40 }),
        (frames, cuts) => {
          const out = decode(1 << 16, chunked(encode(frames), cuts));
          expect(out.error).toBeUndefined();
          expect(out.frames.map((f) => [f.type, f.id, Buffer.from(f.body).toString('hex')])).toEqual(
            frames.map((f) => [f.type, f.id, Buffer.from(f.body).toString('hex')]),
          );
        },
      ),
    );
  });

  it('answers arbitrary and mutated streams with frames or a ProtocolError, within its limit (both ends)', async () => {
    const limits = fc.constantFrom(64, 4096, 1 << 20, MAX_FRAME_FROM_HOST);
    const stream = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      fc.array(spec, { maxLength: 5 }).chain((frames) => mutated(encode(frames))),
    );
    await fuzz(
      'frames: arbitrary and mutated streams (decoder)',
      1000,
      fc.property(limits, stream, fc.array(fc.nat(), { maxLength: 20 }), (limit, bytes, cuts) => {
        const out = decode(limit, chunked(bytes, cuts));
        if (out.error !== undefined) expect(out.error).toBeInstanceOf(ProtocolError);
        // One frame's buffer at most, with its length field: the limit bounds what a peer can make it hold.
        expect(out.largest).toBeLessThanOrEqual(limit + 4);
        for (const f of out.frames) {
          expect(TYPES).toContain(f.type);
          expect(typeof f.meta === 'object' && f.meta !== null && !Array.isArray(f.meta)).toBe(true);
        }
      }),
    );
  });
});

describe("the runner's end", () => {
  it('reads any HostReply and any Call metadata into an answer or a coded refusal, never a crash', async () => {
    await fuzz(
      'frames: runner end (HostReply, Call wasi)',
      500,
      fc.property(metaObject, body, json, (meta, bytes, wasi) => {
        const reply = readHostReply(meta, bytes);
        expect(typeof reply.meta.ok).toBe('boolean');
        try {
          checkCallWasi('p', wasi);
        } catch (error) {
          expect(error).toBeInstanceOf(ReedError);
          expect(isCode((error as ReedError).code)).toBe(true);
        }
      }),
    );
  });
});

// A HostApi whose every method answers nothing: what the fuzzed HostCall frames reach.
const quietHost = new Proxy({}, { get: () => () => undefined }) as HostApi;
const SECRET = 's'.repeat(64);
let server: Server;
let dir: string;
let path: string;
// Its own directory: plugin-tree's tempDir() is removed after each test, and the socket must outlive them.
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'reed-fuzz-'));
  path = join(dir, 'fuzz.sock');
  server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The runner's frames: each type's valid shape, near misses, and anything. */
function runnerFrames(calls: number): fc.Arbitrary<Spec[]> {
  const id = fc.integer({ min: 0, max: calls + 2 });
  const text = fc.string({ maxLength: 40 });
  const frame = fc.oneof(
    fc.record({
      type: fc.constant(FrameType.Result as number),
      id,
      meta: fc.record({ fuelConsumed: fc.oneof(fc.nat(), fc.double(), json) }),
      body,
    }),
    fc.record({
      type: fc.constant(FrameType.Error as number),
      id,
      meta: fc.record(
        {
          code: fc.oneof(fc.constantFrom('call_failed', 'call_timeout', 'no_such_code'), text),
          message: text,
          details: json,
        },
        { requiredKeys: ['code', 'message'] },
      ),
      body,
    }),
    fc.record({
      type: fc.constant(FrameType.Log as number),
      id,
      meta: fc.record({ level: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.double()), message: text }),
      body,
    }),
    fc.record({
      type: fc.constant(FrameType.HostCall as number),
      id,
      meta: fc.record({
        op: fc.oneof(fc.constantFrom(...Object.keys(HOST_FUNCTIONS)), text),
        args: fc.oneof(fc.array(text, { maxLength: 4 }), json),
      }),
      body,
    }),
    fc.record({
      type: fc.constantFrom(FrameType.Pong as number, FrameType.Bye as number, FrameType.Ready as number),
      id,
      meta: metaObject,
      body,
    }),
    spec,
  );
  return fc.array(frame, { maxLength: 8 });
}

interface Outcome {
  closedWith: unknown;
  settled: number;
}

/** One runner connection: Hello, Ready, `calls` calls from the host, then `stream` from the runner, then its end. */
async function session(calls: number, stream: Uint8Array, cuts: number[]): Promise<Outcome> {
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const runner = connect(path);
  runner.on('data', () => {}); // the host's frames are read and dropped
  runner.on('error', () => {});
  const link = new RunnerLink(await accepted, {
    pluginId: 'p',
    secret: SECRET,
    maxFrameBytes: 1 << 16,
    maxOutputBytes: 1 << 16,
    maxFuelPerCall: Number.MAX_SAFE_INTEGER,
    host: quietHost,
    logger: pino({ level: 'silent' }),
    handshakeTimeoutMs: 30_000,
  });
  const closed = new Promise<unknown>((r) => link.onClose(r));
  runner.write(
    encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret: SECRET }),
  );
  await link.handshake();
  const ready = link.welcome({} as never, new Uint8Array(0));
  runner.write(encodeFrame(FrameType.Ready, 0, { functions: ['f'] }));
  await ready;
  let settled = 0;
  const answers = Array.from({ length: calls }, () =>
    link.call('f', new Uint8Array(0)).then(
      () => settled++,
      (error: unknown) => {
        expect(error).toBeInstanceOf(ReedError);
        settled++;
      },
    ),
  );
  for (const chunk of chunked(stream, cuts)) runner.write(chunk);
  runner.end();
  const closedWith = await closed;
  await Promise.all(answers);
  runner.destroy();
  return { closedWith, settled };
}

describe("the host's end", () => {
  it('ends a runner that sends anything wrong with a coded error, and answers every waiting call', async () => {
    const calls = 3;
    const stream = runnerFrames(calls).chain((frames) =>
      fc.oneof(
        { weight: 2, arbitrary: fc.constant(new Uint8Array(encode(frames))) },
        mutated(encode(frames)),
      ),
    );
    await fuzz(
      'frames: host end (RunnerLink over a Unix socket)',
      120,
      fc.asyncProperty(stream, fc.array(fc.nat(), { maxLength: 6 }), async (bytes, cuts) => {
        const out = await session(calls, bytes, cuts);
        expect(out.settled).toBe(calls);
        expect(out.closedWith).toBeInstanceOf(ReedError);
        const error = out.closedWith as ReedError;
        expect(isCode(error.code)).toBe(true);
        // A ProtocolError is a refusal; anything else thrown while handling a frame is a bug in the host.
        expect(error.message).not.toContain('frame handling failed');
      }),
    );
  });
});
