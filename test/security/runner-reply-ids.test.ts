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
async function waitingCall(
  limits = { maxOutputBytes: 1 << 20, maxFuelPerCall: Number.MAX_SAFE_INTEGER },
): Promise<{ call: Promise<unknown>; runner: Socket; link: RunnerLink }> {
  const path = join(tempDir(), 's.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const runner = connect(path);
  const link = new RunnerLink(await accepted, {
    pluginId: 'p',
    secret: SECRET,
    maxFrameBytes: 1 << 20,
    ...limits,
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
  return { call: link.call('f', new Uint8Array(0)), runner, link };
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

// A runner holds a call's output to max_output_bytes and its fuel to fuel_per_call itself; one that plugin code took
// over could answer a Result with up to its frame bound (max_output_bytes + 1 MiB) or claim any fuel, which the
// tenant's usage and the metrics add up (a claim of 1e308 twice made them Infinity). The host holds both again.
describe("a runner answering past the plugin's limits", () => {
  it('a Result larger than max_output_bytes fails its call with output_too_large, and the link serves on', async () => {
    const { call, runner, link } = await waitingCall({ maxOutputBytes: 1024, maxFuelPerCall: 1_000 });
    runner.write(encodeFrame(FrameType.Result, 1, { fuelConsumed: 1 }, new Uint8Array(1025)));
    await expect(call).rejects.toMatchObject({
      code: 'output_too_large',
      details: { bytes: 1025, limit: 1024 },
    });
    const next = link.call('f', new Uint8Array(0));
    runner.write(encodeFrame(FrameType.Result, 2, { fuelConsumed: 1 }, new Uint8Array(1024)));
    await expect(next).resolves.toMatchObject({ output: expect.any(Uint8Array), fuelConsumed: 1 });
    expect(((await next) as { output: Uint8Array }).output.byteLength).toBe(1024);
  });

  it('a claim of more fuel than fuel_per_call is counted as fuel_per_call', async () => {
    const { call, runner } = await waitingCall({ maxOutputBytes: 1024, maxFuelPerCall: 1_000 });
    runner.write(encodeFrame(FrameType.Result, 1, { fuelConsumed: 1e308 }));
    await expect(call).resolves.toMatchObject({ fuelConsumed: 1_000 });
  });
});
