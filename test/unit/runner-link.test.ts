import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { RunnerLink } from '../../src/backends/shared/runner-link.js';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
} from '../../src/protocol/frames.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { tempDir } from '../helpers/plugin-tree.js';

const SECRET = 'a'.repeat(64);
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A link over a real Unix socket, and the runner's end of it. */
async function linked(handshakeTimeoutMs = 10_000): Promise<{ link: RunnerLink; runner: Socket }> {
  const path = join(tempDir(), 's.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const runner = connect(path);
  const link = new RunnerLink(await accepted, {
    pluginId: 'p',
    secret: SECRET,
    maxFrameBytes: 1 << 20,
    maxOutputBytes: 1 << 20,
    maxFuelPerCall: Number.MAX_SAFE_INTEGER,
    host: {} as HostApi,
    logger: pino({ level: 'silent' }),
    handshakeTimeoutMs,
  });
  closers.push(() => {
    link.destroy();
    runner.destroy();
    server.close();
  });
  return { link, runner };
}

const hello = (secret: string) =>
  encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret });
const settle = () => new Promise((r) => setTimeout(r, 100));

/** A link past its Welcome; the runner's end reads everything, each frame (from the first) to `onFrame`. */
async function readyLink(onFrame?: (frame: Frame) => void): Promise<{ link: RunnerLink; runner: Socket }> {
  const { link, runner } = await linked();
  const decoder = new FrameDecoder(1 << 20);
  runner.on('data', (chunk: Buffer) => {
    for (const frame of decoder.push(chunk)) onFrame?.(frame);
  });
  runner.write(hello(SECRET));
  await link.handshake();
  const ready = link.welcome({} as never, new Uint8Array(0));
  runner.write(encodeFrame(FrameType.Ready, 0, { functions: ['f'] }));
  await ready;
  return { link, runner };
}

describe('the runner link handshake', () => {
  it('holds a Hello that arrives before anyone asks for the handshake (a runner faster than its starter)', async () => {
    const { link, runner } = await linked();
    runner.write(hello(SECRET));
    await settle(); // the Hello is read and handled here, before handshake() is called
    await expect(link.handshake()).resolves.toBeUndefined();
  });

  it('fails at once, not at the deadline, for a wrong secret that arrived before anyone asked', async () => {
    const { link, runner } = await linked(60_000);
    runner.write(hello('b'.repeat(64)));
    await settle();
    const started = Date.now();
    await expect(link.handshake()).rejects.toMatchObject({ code: 'handshake_failed' });
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('fails with handshake_failed when no Hello comes within the deadline', async () => {
    const { link } = await linked(200);
    await expect(link.handshake()).rejects.toMatchObject({
      code: 'handshake_failed',
      message: expect.stringContaining('no handshake within the deadline'),
    });
  });
});

describe('a malformed reply', () => {
  // Found by test/fuzz/frames.test.ts: a Result whose fuelConsumed was not a number took its call out of the
  // waiting ones before refusing the frame, so that call was never answered, not even when the link closed.
  it('ends the link and fails the call it named with protocol_violation', async () => {
    const { link, runner } = await readyLink();
    const call = link.call('f', new Uint8Array(0));
    runner.write(encodeFrame(FrameType.Result, 1, { fuelConsumed: null }));
    await expect(call).rejects.toMatchObject({
      code: 'protocol_violation',
      message: expect.stringContaining('malformed Result frame'),
    });
  });
});

describe('call ids', () => {
  // A frame carries its id in 32 bits. Before, the link counted on past 2^32 - 1: the 2^32nd call went out as id 0
  // and its reply, waited for under 2^32, ended the link as a reply for an unknown call.
  it('start again at 1 after 2^32 - 1, skipping an id still waiting', async () => {
    const seen: number[] = [];
    const { link, runner } = await readyLink((frame) => {
      if (frame.type === FrameType.Call) seen.push(frame.id);
    });
    const first = link.call('f', new Uint8Array(0)); // id 1, left waiting
    link.nextIdForTest = 0xffff_ffff;
    const last = link.call('f', new Uint8Array(0));
    const wrapped = link.call('f', new Uint8Array(0));
    await settle();
    expect(seen).toEqual([1, 0xffff_ffff, 2]);
    for (const id of [2, 1, 0xffff_ffff])
      runner.write(encodeFrame(FrameType.Result, id, { fuelConsumed: id }));
    await expect(Promise.all([first, last, wrapped])).resolves.toEqual([
      { output: expect.anything(), fuelConsumed: 1 },
      { output: expect.anything(), fuelConsumed: 0xffff_ffff },
      { output: expect.anything(), fuelConsumed: 2 },
    ]);
  });
});

describe('pings', () => {
  // A runner that runs a call on its main thread answers a Ping only after the call; the supervisor's health check
  // pings with a 1 s timeout whatever is in flight. The late Pong used to end the link as a protocol violation,
  // failing the very call that made it late (found by the session-15 review).
  it('a Pong that comes after its ping timed out is let by: the call in flight gets its Result', async () => {
    const { link, runner } = await readyLink();
    const call = link.call('f', new Uint8Array(0)); // id 1
    const ping = link.ping(20); // id 2
    await expect(ping).resolves.toBe(false);
    runner.write(encodeFrame(FrameType.Pong, 2));
    runner.write(encodeFrame(FrameType.Result, 1, { fuelConsumed: 5 }));
    await expect(call).resolves.toMatchObject({ fuelConsumed: 5 });
    expect(link.ready).toBe(true);
  });

  // More than one ping timing out in a call (health polled each second through a long call): a Ping sent each time
  // queued behind the first and each Pong had to be matched to one of them; now the link sends one and waits for it.
  it('pings that time out during one call send one Ping, whose one late Pong answers it; the link serves on', async () => {
    const pings: number[] = [];
    const { link, runner } = await readyLink((frame) => {
      if (frame.type === FrameType.Ping) pings.push(frame.id);
    });
    const call = link.call('f', new Uint8Array(0));
    for (let i = 0; i < 300; i++) expect(await link.ping(1)).toBe(false);
    expect(pings).toEqual([2]);
    runner.write(encodeFrame(FrameType.Result, 1, { fuelConsumed: 5 }));
    runner.write(encodeFrame(FrameType.Pong, 2));
    await expect(call).resolves.toMatchObject({ fuelConsumed: 5 });
    const next = link.ping(10_000); // answered: a new Ping now
    await settle();
    expect(pings).toEqual([2, 3]);
    runner.write(encodeFrame(FrameType.Pong, 3));
    await expect(next).resolves.toBe(true);
    expect(link.ready).toBe(true);
  });

  it('a Pong for an id the host never pinged, or a second Pong for a ping, ends the link', async () => {
    for (const pongs of [[7], [2, 2]]) {
      const { link, runner } = await readyLink();
      const call = link.call('f', new Uint8Array(0)); // id 1
      if (pongs.length === 2) void link.ping(10_000); // id 2
      for (const id of pongs) runner.write(encodeFrame(FrameType.Pong, id));
      await expect(call).rejects.toMatchObject({
        code: 'protocol_violation',
        message: expect.stringContaining(`Pong for unknown ping ${pongs[0]}`),
      });
    }
  });

  it('a ping waiting when the link ends answers false then, not at its timeout', async () => {
    const { link, runner } = await readyLink();
    const ping = link.ping(600_000);
    runner.destroy();
    await expect(ping).resolves.toBe(false);
  });
});
