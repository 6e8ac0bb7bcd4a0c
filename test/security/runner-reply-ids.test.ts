import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { RunnerLink } from '../../src/backends/shared/runner-link.js';
import { encodeFrame, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { tempDir } from '../helpers/plugin-tree.js';

const SECRET = 'a'.repeat(64);
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A ready link over a real Unix socket, with one call waiting, and the hostile runner's end. */
async function waitingCall(): Promise<{ call: Promise<unknown>; runner: Socket }> {
  const path = join(tempDir(), 's.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const runner = connect(path);
  const link = new RunnerLink(await accepted, {
    pluginId: 'p',
    secret: SECRET,
    maxFrameBytes: 1 << 20,
    host: {} as HostApi,
    logger: pino({ level: 'silent' }),
    handshakeTimeoutMs: 10_000,
  });
  closers.push(() => {
    link.destroy();
    runner.destroy();
    server.close();
  });
  runner.on('data', () => {});
  runner.write(
    encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret: SECRET }),
  );
  await link.handshake();
  const ready = link.welcome({} as never, new Uint8Array(0));
  runner.write(encodeFrame(FrameType.Ready, 0, { functions: ['f'] }));
  await ready;
  return { call: link.call('f', new Uint8Array(0)), runner };
}

// The waiting calls' table marks an empty slot with id 0 (PendingCalls): a hostile runner's reply under id 0, or
// under an id no call has, must not take, move or answer another call; it ends the link, and the call waiting fails.
describe('a runner replying under an id no call waits for', () => {
  for (const id of [0, 2, 0xffff_ffff])
    it(`id ${id}: protocol_violation, and the waiting call fails with the link`, async () => {
      const { call, runner } = await waitingCall();
      runner.write(encodeFrame(FrameType.Result, id, { fuelConsumed: 1 }));
      await expect(call).rejects.toMatchObject({
        code: expect.stringMatching(/protocol_violation|sandbox_crashed/),
      });
    });
});
