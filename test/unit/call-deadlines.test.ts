import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Runner } from '../../src/backends/shared/runner.js';
import { RunnerLink } from '../../src/backends/shared/runner-link.js';
import { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import { encodeFrame, FrameDecoder, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { tempDir } from '../helpers/plugin-tree.js';

const SECRET = 'a'.repeat(64);
const logger = pino({ level: 'silent' });
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/**
 * A runner over a real Unix socket whose other end is this test: it says Hello, answers the Welcome with Ready,
 * and holds every Call until the test answers it (`answer(id)`), so calls stay in flight as long as the test wants.
 */
async function heldRunner(): Promise<{ runner: Runner; calls: number[]; answer: (id: number) => void }> {
  const path = join(tempDir(), 's.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const end = connect(path);
  const link = new RunnerLink(await accepted, {
    pluginId: 'p',
    secret: SECRET,
    maxFrameBytes: 1 << 20,
    maxOutputBytes: 1 << 20,
    maxFuelPerCall: Number.MAX_SAFE_INTEGER,
    host: {} as HostApi,
    logger,
    handshakeTimeoutMs: 10_000,
  });
  const calls: number[] = [];
  const decoder = new FrameDecoder(1 << 20);
  end.on('data', (chunk: Buffer) => {
    for (const frame of decoder.push(chunk)) {
      if (frame.type === FrameType.Welcome) end.write(encodeFrame(FrameType.Ready, 0, { functions: ['f'] }));
      if (frame.type === FrameType.Call) calls.push(frame.id);
    }
  });
  end.write(encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret: SECRET }));
  let markExited!: (exit: { code: number | null; signal: string | null }) => void;
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => {
    markExited = r;
  });
  let alive = true;
  const stop = () => {
    if (!alive) return;
    alive = false;
    link.destroy();
    end.destroy();
    server.close();
    markExited({ code: null, signal: 'SIGKILL' });
  };
  closers.push(stop);
  const runner: Runner = {
    dir: undefined,
    link,
    exited,
    get alive() {
      return alive;
    },
    stderrTail: '',
    pid: undefined,
    start: async () => {
      await link.handshake();
      await link.welcome({} as never, new Uint8Array(0));
    },
    oomKilled: async () => false,
    kill: stop,
    terminate: stop,
    destroy: async () => stop(),
  };
  return {
    runner,
    calls,
    answer: (id) => end.write(encodeFrame(FrameType.Result, id, { fuelConsumed: 0 }, Buffer.from('ok'))),
  };
}

/** Timers that keep the event loop alive. */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const until = async (done: () => boolean) => {
  while (!done()) await new Promise((r) => setImmediate(r));
};

describe('call deadlines in process and container modes', () => {
  it('64 calls in flight share one deadline timer, and a later call with a shorter deadline still expires at its own', async () => {
    const held = await heldRunner();
    let started = false;
    const sandbox = new SupervisedSandbox({
      pluginId: 'p',
      mode: 'process',
      // One runner: the deadline below kills it, and what comes after is not this test's business.
      createRunner: () => {
        if (started) throw new Error('no second runner here');
        started = true;
        return held.runner;
      },
      limits: DEFAULT_LIMITS,
      logger,
      session: { id: 'test' },
      supervision: { healthIntervalMs: 0, restartBaseMs: 60_000 },
    });
    closers.push(() => void sandbox.kill());
    await sandbox.start();
    const before = timers();
    const long = Array.from({ length: 64 }, () =>
      sandbox.call('f', new Uint8Array(1), { timeoutMs: 60_000 }),
    );
    for (const call of long) call.catch(() => {}); // awaited below once answered
    await until(() => held.calls.length === 64);
    // A timer per call was 64 more here; the one deadline timer is not even counted (it holds no host alive).
    expect(timers() - before).toBeLessThan(2);
    for (const id of held.calls.splice(0)) held.answer(id);
    await Promise.all(long);
    // The timer armed for 60 s stays; a call due far sooner must not wait for it.
    const short = sandbox.call('f', new Uint8Array(1), { timeoutMs: 50 });
    await expect(short).rejects.toMatchObject({ code: 'call_timeout' });
  });
});
