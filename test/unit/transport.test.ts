import { existsSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ReedError } from '../../src/errors.js';
import { encodeFrame, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { RunnerConnection } from '../../src/transport/connection.js';
import { dial, dialArguments } from '../../src/transport/transport.js';
import { UnixSocketTransport } from '../../src/transport/unix-socket.js';
import { tempDir } from '../helpers/plugin-tree.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listening(options: Partial<ConstructorParameters<typeof UnixSocketTransport>[0]> = {}) {
  const refusals: number[] = [];
  const transport = new UnixSocketTransport({
    path: join(tempDir(), 's.sock'),
    refused: () => refusals.push(Date.now()),
    ...options,
  });
  await transport.listen();
  cleanups.push(() => transport.close());
  return { transport, refusals };
}

function dialed(address: string): Socket {
  const socket = dial(address);
  socket.on('error', () => {});
  cleanups.push(() => socket.destroy());
  return socket;
}

const closedSoon = (socket: Socket) => new Promise<void>((r) => socket.once('close', () => r()));

describe('the Unix socket transport', () => {
  it('listens on a socket only its owner may use, and tells the runner where it sees it', async () => {
    const { transport } = await listening({ runnerPath: '/run/reed/s.sock' });
    expect(statSync(transport.path).mode & 0o777).toBe(0o600);
    expect(transport.addressForRunner()).toBe('unix:/run/reed/s.sock');
    expect(dialArguments(transport.addressForRunner())).toEqual(['--socket', '/run/reed/s.sock']);
  });

  it('hands the socket alone to the runner\u2019s uid (the host runs as root here, as in CI)', async () => {
    const { transport } = await listening({ owner: { uid: 64_123, gid: 64_124 } });
    expect(statSync(transport.path)).toMatchObject({ uid: 64_123, gid: 64_124 });
  });

  it('accepts one connection and refuses every later one at once', async () => {
    const { transport, refusals } = await listening();
    const first = dialed(transport.addressForRunner());
    const accepted = await transport.accept();
    const second = dialed(transport.addressForRunner());
    await closedSoon(second);
    expect(refusals).toHaveLength(1);
    // The first is untouched: what it writes arrives.
    const data = new Promise<string>((r) => accepted.once('data', (b: Buffer) => r(b.toString())));
    first.write('still here');
    expect(await data).toBe('still here');
  });

  it('close stops listening, removes the socket, and may be called again', async () => {
    const { transport } = await listening();
    await transport.close();
    await transport.close();
    expect(existsSync(transport.path)).toBe(false);
  });

  it('an address that is not a Unix socket goes as --connect; this runner build dials only unix:', () => {
    expect(dialArguments('tls://10.0.0.5:7443')).toEqual(['--connect', 'tls://10.0.0.5:7443']);
    expect(() => dial('tls://10.0.0.5:7443')).toThrow(/only unix:PATH/);
  });
});

describe('a runner connection over a transport', () => {
  const SECRET = 's'.repeat(64);

  async function connected(maxFrameBytes = 1 << 20) {
    const { transport } = await listening();
    const runner = dialed(transport.addressForRunner());
    const frames: number[] = [];
    const closed: ReedError[] = [];
    const connection = new RunnerConnection(
      await transport.accept(),
      {
        pluginId: 'p',
        secret: SECRET,
        maxFrameBytes,
        handshakeTimeoutMs: 5_000,
        logger: pino({ level: 'silent' }),
      },
      { frame: (f) => frames.push(f.type), closed: (e) => closed.push(e) },
    );
    cleanups.push(() =>
      connection.close(closed[0] ?? ({ code: 'sandbox_crashed', message: 'end' } as ReedError)),
    );
    return { runner, connection, frames, closed };
  }

  const hello = (secret = SECRET) =>
    encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret });

  it('passes frames on only after a right Hello', async () => {
    const { runner, connection, frames } = await connected();
    runner.write(Buffer.concat([hello(), encodeFrame(FrameType.Pong, 7)]));
    await connection.handshake();
    await new Promise((r) => setTimeout(r, 50));
    expect(frames).toEqual([FrameType.Pong]);
  });

  it('ends the connection for a frame before the Hello, or one past the bound', async () => {
    const early = await connected();
    early.runner.write(encodeFrame(FrameType.Pong, 1));
    await closedSoon(early.runner);
    expect(early.closed[0]?.code).toBe('protocol_violation');
    await expect(early.connection.handshake()).rejects.toMatchObject({ code: 'protocol_violation' });

    const big = await connected(1024);
    big.runner.write(hello());
    await big.connection.handshake();
    big.runner.write(encodeFrame(FrameType.Log, 0, { level: 2, message: 'x' }, Buffer.alloc(4096)));
    await closedSoon(big.runner);
    expect(big.closed[0]?.code).toBe('protocol_violation');
    expect(big.frames).toEqual([]);
  });

  it('a wrong secret fails the handshake and ends the connection', async () => {
    const { runner, connection, closed } = await connected();
    runner.write(hello('t'.repeat(64)));
    await expect(connection.handshake()).rejects.toMatchObject({ code: 'handshake_failed' });
    await closedSoon(runner);
    expect(closed.map((e) => e.code)).toEqual(['handshake_failed']);
  });
});
