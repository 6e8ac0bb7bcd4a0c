import { once } from 'node:events';
import type { Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIRST_REQUEST_MS, HEADERS_TIMEOUT_MS } from '../../src/server/connection-guard.js';
import { listenMetrics } from '../../src/server/metrics-server.js';
import { listenTls } from '../../src/server/tls-listener.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

/**
 * Issue 17, part 5: slow and silent clients cannot hold the servers' connections for ever (src/server/
 * connection-guard.ts). Before, a connection that sent nothing (on the TLS listener: after its handshake, or never
 * starting one for Node's 120 s) was held without end, each a descriptor of the host's and a slot of the
 * listener's bound; a request trickled slowly was held up to 30 s past its headers timeout. A call answered late,
 * with nothing on the wire meanwhile, must still be answered. No timing is asserted: only that what must close
 * closes (within a generous deadline) and what must be answered is.
 */
let pki: TestPki;
let tls: import('node:https').Server;
let metrics: Server;
const SLOW_ANSWER_MS = FIRST_REQUEST_MS + 3_000;

beforeAll(async () => {
  pki = makeTestPki();
  tls = await listenTls(
    (req, res) => {
      const delay = req.url === '/slow' ? SLOW_ANSWER_MS : 0;
      setTimeout(() => res.end('answered'), delay);
    },
    {
      host: '127.0.0.1',
      port: 0,
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      maxHeaderSize: 16_384,
      requestTimeoutMs: 60_000,
    },
  );
  metrics = await listenMetrics(
    { text: async () => 'reed_up 1\n', contentType: 'text/plain' },
    { host: '127.0.0.1', port: 0 },
  );
});

afterAll(async () => {
  for (const server of [tls, metrics]) server.closeAllConnections();
  await Promise.all([tls, metrics].map((server) => new Promise((r) => server.close(r))));
});

const port = (server: { address(): AddressInfo | string | null }) => (server.address() as AddressInfo).port;

/** Resolves true when the server closes `socket` within `ms`, false if it is still open then. */
function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A TLS connection to the listener, once its handshake is done. */
async function tlsSocket(): Promise<Socket> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port: port(tls),
    ca: pki.read(pki.caCert),
    servername: 'localhost',
  });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  return socket;
}

/** Sends one GET for `path` and resolves with what came back before the server closed or answered. */
function get(socket: Socket, path: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.includes('answered')) resolve(got);
    });
    socket.once('close', () => resolve(got));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  });
}

/** A request head trickled one header line a second, never finished. */
function trickle(socket: Socket): () => void {
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
  const timer = setInterval(() => {
    if (socket.writable) socket.write('X-Slow: y\r\n');
  }, 1_000);
  return () => clearInterval(timer);
}

describe('the TLS listener (serve --listen)', () => {
  it('closes a silent connection, a never-started handshake and a trickled request, and still answers a slow call', async () => {
    const deadline = HEADERS_TIMEOUT_MS + 20_000;
    const silent = await tlsSocket();
    const noHandshake = connect(port(tls), '127.0.0.1');
    noHandshake.on('error', () => {});
    const trickled = await tlsSocket();
    const stop = trickle(trickled);
    const slow = await tlsSocket();
    const [silentClosed, noHandshakeClosed, trickledClosed, slowAnswer, normal] = await Promise.all([
      closedWithin(silent, deadline),
      closedWithin(noHandshake, deadline),
      closedWithin(trickled, deadline),
      get(slow, '/slow'),
      tlsSocket().then((s) => get(s, '/')),
    ]);
    stop();
    expect({ silentClosed, noHandshakeClosed, trickledClosed }).toEqual({
      silentClosed: true,
      noHandshakeClosed: true,
      trickledClosed: true,
    });
    expect(slowAnswer).toMatch(/^HTTP\/1\.1 200[\s\S]*answered$/);
    expect(normal).toMatch(/^HTTP\/1\.1 200/);
    for (const s of [slow]) s.destroy();
  }, 90_000);
});

describe('the metrics listener (serve --metrics-listen)', () => {
  it('closes a silent connection and a trickled request, and answers a scrape meanwhile', async () => {
    const deadline = HEADERS_TIMEOUT_MS + 20_000;
    const silent = connect(port(metrics), '127.0.0.1');
    const trickled = connect(port(metrics), '127.0.0.1');
    for (const s of [silent, trickled]) s.on('error', () => {});
    await Promise.all([once(silent, 'connect'), once(trickled, 'connect')]);
    const stop = trickle(trickled);
    const scrape = await fetch(`http://127.0.0.1:${port(metrics)}/metrics`).then((r) => r.text());
    const [silentClosed, trickledClosed] = await Promise.all([
      closedWithin(silent, deadline),
      closedWithin(trickled, deadline),
    ]);
    stop();
    expect(scrape).toBe('reed_up 1\n');
    expect({ silentClosed, trickledClosed }).toEqual({ silentClosed: true, trickledClosed: true });
  }, 90_000);
});
