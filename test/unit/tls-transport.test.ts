import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dialTls } from '../../sandbox-runner/tls-dial.js';
import type { ReedError } from '../../src/errors.js';
import {
  ipBytes,
  ORCHESTRATOR_SERVERNAME,
  OrchestratorCa,
  serialBytes,
} from '../../src/pki/orchestrator-ca.js';
import { encodeFrame, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { RunnerConnection } from '../../src/transport/connection.js';
import { parseTlsAddress } from '../../src/transport/tls-address.js';
import {
  listenTls,
  runnerTlsEnvironment,
  type TlsRunnerTransport,
  type TlsTransportOptions,
} from '../../src/transport/tls-transport.js';
import { dialArguments } from '../../src/transport/transport.js';
import { tempDir } from '../helpers/plugin-tree.js';

// Real sockets and real TLS (node:tls over TCP on 127.0.0.1), certificates from the orchestrator's own CA.

let ca: OrchestratorCa;
let server: { certPem: string; keyPem: string };
let foreign: OrchestratorCa;
beforeAll(async () => {
  ca = await OrchestratorCa.create();
  server = await ca.issueServer({ ipAddresses: ['127.0.0.1'] });
  foreign = await OrchestratorCa.create();
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listening(options: Partial<TlsTransportOptions> = {}) {
  const refusals: number[] = [];
  const failures: Error[] = [];
  const transport = await listenTls({
    credentials: server,
    caPem: ca.certPem,
    servername: ORCHESTRATOR_SERVERNAME,
    handshakeTimeoutMs: 10_000,
    refused: () => refusals.push(1),
    handshakeFailed: (e) => failures.push(e),
    ...options,
  });
  cleanups.push(() => transport.close());
  return { transport, refusals, failures };
}

/** The runner's own dial (sandbox-runner/tls-dial.ts), with the environment the host gives it. */
function runnerDial(transport: TlsRunnerTransport, env?: Record<string, string>): TLSSocket {
  const material = transport.runnerMaterial();
  const socket = dialTls(material.address, env ?? runnerTlsEnvironment(material));
  socket.on('error', () => {});
  cleanups.push(() => socket.destroy());
  return socket;
}

function tcp(port: number): Socket {
  const socket = connectTcp(port, '127.0.0.1');
  socket.on('error', () => {});
  cleanups.push(() => socket.destroy());
  return socket;
}

const closed = (socket: Socket) =>
  new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r())));
const secured = (socket: TLSSocket) =>
  new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
const failed = (socket: TLSSocket) =>
  new Promise<Error>((resolve, reject) => {
    socket.once('secureConnect', () => reject(new Error('the handshake succeeded')));
    socket.once('error', resolve);
  });
/** Whether `promise` is still pending after the event loop has gone round (accept() must not have resolved). */
const pending = async (promise: Promise<unknown>) =>
  Promise.race([promise.then(() => false), new Promise<boolean>((r) => setImmediate(() => r(true)))]);

describe('the orchestrator CA', () => {
  it('makes serials positive and minimally encoded, whatever the random bytes (a leading 0 was DER padding)', () => {
    for (const first of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
      for (const second of [0x00, 0x7f, 0x80, 0xff]) {
        const random = new Uint8Array(16).fill(0x55);
        random[0] = first;
        random[1] = second;
        const serial = serialBytes(random);
        expect(serial).toHaveLength(16);
        expect(serial[0]).toBeGreaterThan(0);
        expect(serial[0]).toBeLessThan(0x80);
        expect(serial.subarray(1)).toEqual(random.subarray(1));
        expect(random[0]).toBe(first); // the caller's bytes are left as they were
      }
    }
  });

  it('issues a server certificate for the orchestrator name and an IP, that its CA certificate verifies', () => {
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(server.certPem);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.verify(new X509Certificate(foreign.certPem).publicKey)).toBe(false);
    expect(cert.subjectAltName).toBe(`DNS:${ORCHESTRATOR_SERVERNAME}, IP Address:127.0.0.1`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only
    expect(cert.checkHost(ORCHESTRATOR_SERVERNAME)).toBe(ORCHESTRATOR_SERVERNAME);
    expect(cert.serialNumber).not.toBe(caCert.serialNumber);
  });

  it('issues client certificates (clientAuth) and writes IP addresses as their bytes', async () => {
    const client = new X509Certificate((await ca.issueClient('sandbox-1')).certPem);
    expect(client.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(client.subject).toBe('CN=sandbox-1');
    expect([...ipBytes('10.1.2.3')]).toEqual([10, 1, 2, 3]);
    expect(ipBytes('::1').toString('hex')).toBe(`${'0'.repeat(30)}01`);
    expect(ipBytes('fd00:1::2').toString('hex')).toBe('fd000001000000000000000000000002');
    expect(ipBytes('::ffff:1.2.3.4').toString('hex')).toBe('00000000000000000000ffff01020304');
    await expect(ca.issueServer({ ipAddresses: ['not-an-ip'] })).rejects.toMatchObject({ code: 'usage' });
    await expect(ca.issueServer({ dnsNames: ['bad name\n'] })).rejects.toMatchObject({ code: 'usage' });
  });
});

describe('the TLS transport', () => {
  it('tells the runner where to dial, and the runner verifies the orchestrator and speaks TLS 1.3', async () => {
    const { transport } = await listening();
    const address = transport.addressForRunner();
    expect(parseTlsAddress(address)).toEqual({ host: '127.0.0.1', port: transport.port });
    expect(dialArguments(address)).toEqual(['--connect', address]);
    expect(transport.runnerMaterial()).toEqual({
      address,
      caPem: ca.certPem,
      servername: ORCHESTRATOR_SERVERNAME,
    });
    const runner = runnerDial(transport);
    await secured(runner);
    expect(runner.authorized).toBe(true);
    expect(runner.getProtocol()).toBe('TLSv1.3');
    const accepted = await transport.accept();
    const data = new Promise<string>((r) => accepted.once('data', (b: Buffer) => r(b.toString())));
    runner.write('over tls');
    expect(await data).toBe('over tls');
  });

  it('tells the runner the address it reaches the orchestrator by, when that is not where it listens', async () => {
    const { transport } = await listening({ advertise: { host: 'orchestrator.overlay', port: 7443 } });
    expect(transport.addressForRunner()).toBe('tls://orchestrator.overlay:7443');
    const v6 = await listening({ advertise: { host: 'fd00::5' } });
    expect(v6.transport.addressForRunner()).toBe(`tls://[fd00::5]:${v6.transport.port}`);
    expect(parseTlsAddress(v6.transport.addressForRunner()).host).toBe('fd00::5');
  });

  it('a runner given another CA refuses the orchestrator and sends it nothing', async () => {
    const { transport } = await listening();
    const material = transport.runnerMaterial();
    const runner = runnerDial(transport, runnerTlsEnvironment({ ...material, caPem: foreign.certPem }));
    const error = await failed(runner);
    expect(error.message).toMatch(
      /unable to (get local issuer|verify the first)|certificate signature failure/i,
    );
    // Whatever the host saw of it, no byte of application data arrived.
    const accepted = await Promise.race([transport.accept(), closed(runner).then(() => undefined)]);
    if (accepted !== undefined) {
      const bytes: Buffer[] = [];
      accepted.on('data', (b: Buffer) => bytes.push(b));
      await closed(accepted);
      expect(Buffer.concat(bytes).length).toBe(0);
    }
  });

  it('a runner told another server name refuses the certificate', async () => {
    const { transport } = await listening();
    const material = transport.runnerMaterial();
    const runner = runnerDial(
      transport,
      runnerTlsEnvironment({ ...material, servername: 'someone-else.reed.invalid' }),
    );
    expect((await failed(runner)).message).toMatch(/altnames|does not match/i);
  });

  it('the runner will not dial without the CA or the name, nor an address that is not tls://HOST:PORT', () => {
    const env = { REED_TLS_CA: ca.certPem, REED_TLS_SERVERNAME: ORCHESTRATOR_SERVERNAME };
    expect(() => dialTls('tls://127.0.0.1:9', { REED_TLS_SERVERNAME: 'x' })).toThrow(/no CA/);
    expect(() => dialTls('tls://127.0.0.1:9', { REED_TLS_CA: ca.certPem })).toThrow(/no server name/);
    expect(() => dialTls('tls://127.0.0.1', env)).toThrow(/not a TLS runner address/);
    expect(() => dialTls('tcp://127.0.0.1:9', env)).toThrow(/not a TLS runner address/);
    expect(parseTlsAddress('tls://[fd00::5]:7443')).toEqual({ host: 'fd00::5', port: 7443 });
  });

  it('a plaintext client is closed; it is not the sandbox\u2019s connection, the runner still is', async () => {
    const { transport, failures } = await listening();
    const plain = tcp(transport.port);
    plain.write(encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret: 'x' }));
    await closed(plain);
    expect(failures.length).toBe(1);
    expect(await pending(transport.accept())).toBe(true);
    const runner = runnerDial(transport);
    await secured(runner);
    await transport.accept();
  });

  it('a client that never finishes its TLS handshake is closed at the deadline', async () => {
    const { transport, failures } = await listening({ handshakeTimeoutMs: 300 });
    const silent = tcp(transport.port);
    // Half a ClientHello: a record header promising 512 bytes, and five of them.
    const trickle = tcp(transport.port);
    trickle.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]));
    await Promise.all([closed(silent), closed(trickle)]);
    expect(failures.map((e) => e.message)).toEqual([
      expect.stringMatching(/timed out|timeout/i),
      expect.stringMatching(/timed out|timeout/i),
    ]);
    expect(await pending(transport.accept())).toBe(true);
  });

  it('holds at most maxPendingHandshakes unfinished handshakes: one more is closed at once', async () => {
    const { transport } = await listening({ maxPendingHandshakes: 2 });
    const held = [tcp(transport.port), tcp(transport.port)];
    for (const s of held) await new Promise((r) => s.once('connect', r));
    const third = tcp(transport.port);
    await closed(third);
    expect(held.every((s) => !s.destroyed)).toBe(true);
  });

  it('accepts one connection and closes every later one before any TLS', async () => {
    const { transport, refusals } = await listening();
    const first = runnerDial(transport);
    await secured(first);
    const accepted = await transport.accept();
    const second = runnerDial(transport);
    await closed(second);
    expect(refusals).toHaveLength(1);
    const data = new Promise<string>((r) => accepted.once('data', (b: Buffer) => r(b.toString())));
    first.write('still here');
    expect(await data).toBe('still here');
  });

  it('resumes no session: what one sandbox\u2019s runner was given does not open another sandbox\u2019s connection', async () => {
    const a = await listening();
    const b = await listening();
    const first = runnerDial(a.transport);
    const sessions: Buffer[] = [];
    first.on('session', (s: Buffer) => sessions.push(s));
    await secured(first);
    const accepted = await a.transport.accept();
    // TLS 1.3 sends its tickets, if any, right after its handshake: before the server's first data.
    const reply = new Promise((r) => first.once('data', r));
    accepted.write('y');
    await reply;
    for (const session of [...sessions, undefined]) {
      const again = connectTls({
        host: '127.0.0.1',
        port: b.transport.port,
        ca: ca.certPem,
        servername: ORCHESTRATOR_SERVERNAME,
        minVersion: 'TLSv1.3',
        ...(session === undefined ? {} : { session }),
      });
      again.on('error', () => {});
      cleanups.push(() => again.destroy());
      await secured(again);
      expect(again.isSessionReused()).toBe(false);
      again.destroy();
    }
  });

  it('mutual TLS: a runner without a client certificate of the CA is refused, one with it accepted', async () => {
    const { transport, failures } = await listening({ clientCaPem: ca.certPem });
    const material = transport.runnerMaterial();
    const anonymous = connectTls({
      host: '127.0.0.1',
      port: transport.port,
      ca: ca.certPem,
      servername: material.servername,
    });
    anonymous.on('error', () => {});
    cleanups.push(() => anonymous.destroy());
    await closed(anonymous);
    expect(failures.length).toBe(1);
    expect(await pending(transport.accept())).toBe(true);
    // The runner's own dial, given its certificate and key as files (a Swarm secret's form).
    const client = await ca.issueClient('sandbox-7');
    const dir = tempDir();
    writeFileSync(join(dir, 'cert.pem'), client.certPem);
    writeFileSync(join(dir, 'key.pem'), client.keyPem, { mode: 0o600 });
    const holder = runnerDial(transport, {
      ...runnerTlsEnvironment(material),
      REED_TLS_CERT_FILE: join(dir, 'cert.pem'),
      REED_TLS_KEY_FILE: join(dir, 'key.pem'),
    });
    const holderSecured = secured(holder);
    expect(() =>
      dialTls(material.address, {
        ...runnerTlsEnvironment(material),
        REED_TLS_KEY_FILE: join(dir, 'key.pem'),
      }),
    ).toThrow(/go together/);
    const accepted = (await transport.accept()) as TLSSocket;
    expect(accepted.getPeerCertificate().subject.CN).toBe('sandbox-7');
    await holderSecured;
    expect(holder.authorized).toBe(true);
  });

  it('close frees the port and may be called again', async () => {
    const { transport } = await listening();
    const port = transport.port;
    await transport.close();
    await transport.close();
    const socket = tcp(port);
    await closed(socket);
  });
});

describe('a runner connection over the TLS transport', () => {
  const SECRET = 's'.repeat(64);
  const hello = (secret = SECRET) =>
    encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'p', secret });

  async function connected(options: { maxFrameBytes?: number; helloMs?: number } = {}) {
    const { transport } = await listening();
    const runner = runnerDial(transport);
    await secured(runner);
    const frames: number[] = [];
    const ended: ReedError[] = [];
    const connection = new RunnerConnection(
      await transport.accept(),
      {
        pluginId: 'p',
        secret: SECRET,
        maxFrameBytes: options.maxFrameBytes ?? 1 << 20,
        handshakeTimeoutMs: options.helloMs ?? 10_000,
        logger: pino({ level: 'silent' }),
      },
      { frame: (f) => frames.push(f.type), closed: (e) => ended.push(e) },
    );
    cleanups.push(() =>
      connection.close(ended[0] ?? ({ code: 'sandbox_crashed', message: 'end' } as ReedError)),
    );
    return { runner, connection, frames, ended };
  }

  it('the Hello with the right secret opens it; frames pass after it', async () => {
    const { runner, connection, frames } = await connected();
    runner.write(Buffer.concat([hello(), encodeFrame(FrameType.Pong, 7)]));
    await connection.handshake();
    const deadline = Date.now() + 10_000;
    while (frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(frames).toEqual([FrameType.Pong]);
  });

  it('a wrong secret fails the handshake and closes the connection', async () => {
    const { runner, connection, ended } = await connected();
    runner.write(hello('t'.repeat(64)));
    await expect(connection.handshake()).rejects.toMatchObject({ code: 'handshake_failed' });
    await closed(runner);
    expect(ended.map((e) => e.code)).toEqual(['handshake_failed']);
  });

  it('no Hello within the deadline fails the handshake', async () => {
    const { runner, connection } = await connected({ helloMs: 300 });
    await expect(connection.handshake()).rejects.toMatchObject({ code: 'handshake_failed' });
    await closed(runner);
  });

  it('an oversized frame is refused before it is read, after the Hello or instead of it', async () => {
    const after = await connected({ maxFrameBytes: 1024 });
    after.runner.write(hello());
    await after.connection.handshake();
    after.runner.write(encodeFrame(FrameType.Log, 0, { level: 2, message: 'x' }, Buffer.alloc(4096)));
    await closed(after.runner);
    expect(after.ended[0]?.code).toBe('protocol_violation');
    expect(after.frames).toEqual([]);

    const first = await connected();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xffff_ffff);
    first.runner.write(header);
    await closed(first.runner);
    expect(first.ended[0]?.code).toBe('protocol_violation');
  });
});
