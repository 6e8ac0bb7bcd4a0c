// readBody (src/server/request-body.ts), the call route's body reader on both of its paths: its listeners stay on the
// request once it has given the body (removing four of them cost every call more than a check), so `done` must still
// be called exactly once in every way a body ends: whole, past the limit while sent (chunked), and cut by the client.
// Over a real node:http server and raw client connections. It passes on the code before too: it guards the behaviour.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { readBody } from '../../src/server/request-body.js';

interface Seen {
  error: (Error & { code?: string }) | undefined;
  body: string | undefined;
}

const MAX = 16;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** A server reading every request's body with readBody: `seen` lists each done call, `closed` each request closed. */
async function serve() {
  const seen: Seen[] = [];
  const closed: IncomingMessage[] = [];
  const began: IncomingMessage[] = [];
  server = createServer((req, res) => {
    began.push(req);
    req.once('close', () => closed.push(req));
    readBody(req, MAX, (error, body) => {
      seen.push({ error, body: body?.toString() });
      if (error === undefined) res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return { seen, closed, began, open: () => connect(port, '127.0.0.1') };
}

/** Resolves once `check` holds (checked as the event loop turns; the test's own timeout bounds it). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
}

function request(socket: Socket, head: string, body: string): void {
  socket.write(`POST /x HTTP/1.1\r\nHost: x\r\n${head}\r\n${body}`);
}

describe('readBody', () => {
  it('gives a whole body once, and nothing more when the request closes after', async () => {
    const { seen, closed, open } = await serve();
    const socket = open();
    request(socket, 'Content-Length: 5\r\n', 'hello');
    request(socket, 'Transfer-Encoding: chunked\r\n', '3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    await until(() => seen.length === 2);
    socket.end();
    await until(() => closed.length === 2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([
      { error: undefined, body: 'hello' },
      { error: undefined, body: 'abcde' },
    ]);
  });

  it('refuses a body past the limit while it is sent, once, and destroys the request', async () => {
    const { seen, closed, open } = await serve();
    const socket = open();
    const gone = once(socket, 'close');
    request(socket, 'Transfer-Encoding: chunked\r\n', 'a\r\n0123456789\r\na\r\n0123456789\r\n');
    await until(() => seen.length === 1 && closed.length === 1);
    await gone;
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toHaveLength(1);
    expect(seen[0]?.error?.code).toBe('request_too_large');
    expect(seen[0]?.body).toBeUndefined();
    expect(closed[0]?.destroyed).toBe(true);
  });

  it('fails a body the client cuts, once', async () => {
    const { seen, closed, began, open } = await serve();
    const socket = open();
    request(socket, 'Content-Length: 10\r\n', 'abcd');
    // The request has begun (its head and first bytes sent together): the client goes.
    await until(() => began.length === 1);
    socket.destroy();
    await until(() => seen.length === 1 && closed.length === 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toHaveLength(1);
    expect(seen[0]?.error).toBeInstanceOf(Error);
    expect(seen[0]?.body).toBeUndefined();
  });
});
