// Fuzzing the API's request handling (issue 17): the fastify API on main (src/server/) over a real PluginHost
// (mode none, example.hello) on a Unix socket, sent generated requests (methods, paths from the routes with
// hostile segments and queries, content types, trace and auth headers, bodies) and byte mutations of valid raw
// requests. Each is answered with a documented status and, for a failure, a JSON body with a stable code; none
// is a 500 (a fault of the server itself); the server answers /v1/health after each.
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCode } from '../../src/codes.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { createApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { REPO } from '../helpers/cli.js';
import { fuzz, mutated } from '../helpers/fuzz.js';
import { startHost } from '../helpers/host.js';
import { lastingDir } from '../helpers/plugin-tree.js';

let host: PluginHost;
let close: () => Promise<void>;
let socketPath: string;
beforeAll(async () => {
  ({ host } = await startHost([join(REPO, 'examples/plugins')], {
    plugins: ['example.hello'],
    mode: 'none',
    reedToml: '[signatures]\nrequire = "none"\n',
  }));
  const server = createApiServer(host, { maxInputBytes: 64 * 1024, maxInstallBytes: 256 * 1024 });
  socketPath = join(lastingDir('reed-fuzz-api-'), 'api.sock');
  await listenOnSocket(server, socketPath);
  close = () =>
    new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    });
});
afterAll(async () => {
  await close?.();
  await host?.close();
});

/** What the API answers with (src/server/api-server.ts, STATUS; 200 for success); never 500. */
const STATUSES = [200, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503];

const segment = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom('example.hello', 'greet', 'echo', 'greeting', 'count', 'default', 'init'),
  },
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '%00',
    '%ff',
    '%zz',
    '%2F',
    'a'.repeat(300),
    '',
    'deactivate',
    '__proto__',
  ),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
);
const TEMPLATES = [
  '/v1/health',
  '/v1/openapi.json',
  '/v1/plugins',
  '/v1/plugins/$',
  '/v1/plugins/$/call/$',
  '/v1/admin/plugins/$',
  '/v1/admin/plugins/$/reload',
  '/v1/tenants/$/plugins',
  '/v1/tenants/$/plugins/$/call/$',
  '/v1/tenants/$/usage',
  '/v1/admin/tenants',
  '/v1/admin/tenants/$',
  '/metrics',
  '/$',
  '/v1/$/$',
];
const query = fc.oneof(
  fc.constant(''),
  fc
    .array(fc.tuple(fc.constantFrom('arg', 'env', 'x', 'trace', '__proto__'), fc.string({ maxLength: 10 })), {
      maxLength: 4,
    })
    .map((pairs) => `?${pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`),
  fc.constantFrom('?arg=%zz', '?env=A', '?env==x', '?&&', '?env=%00=1'),
);
const path = fc
  .tuple(fc.constantFrom(...TEMPLATES), fc.array(segment, { minLength: 3, maxLength: 3 }), query)
  .map(([t, segs, q]) => {
    let i = 0;
    return t.replace(/\$/g, () => segs[i++] as string) + q;
  });
const headers = fc.record(
  {
    'content-type': fc.constantFrom(
      'application/json',
      'application/octet-stream',
      'application/x-tar',
      'text/plain',
      'multipart/form-data; boundary=x',
      'application/json; charset=latin1',
      'x/y',
    ),
    traceparent: fc.oneof(
      fc.constant('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'),
      fc.string({ maxLength: 60, unit: 'grapheme-ascii' }),
    ),
    authorization: fc.oneof(fc.constant('Bearer x'), fc.string({ maxLength: 40, unit: 'grapheme-ascii' })),
    accept: fc.constantFrom('*/*', 'application/json', 'text/html'),
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 2048 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => new TextEncoder().encode(JSON.stringify(v))),
);
const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND');

function send(
  m: string,
  p: string,
  h: Record<string, string>,
  b?: Uint8Array,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    // A connection per request: no agent's reuse of a connection the server chose to close.
    const req = request({ socketPath, method: m, path: p, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(b);
  });
}

const FILLER = Buffer.from('\r\n'.repeat(40_000));

/** `bytes` sent on a connection of their own, then its end: everything the server answered until it closed. */
function raw(bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.end(bytes);
  });
}

function checkAnswer(m: string, p: string, status: number, text: string): void {
  expect(STATUSES, `${m} ${p}: ${status} ${text.slice(0, 300)}`).toContain(status);
  if (status === 200 || m === 'HEAD') return;
  const answer = JSON.parse(text) as { ok: boolean; error: { code: string } };
  expect(answer.ok).toBe(false);
  expect(isCode(answer.error.code), answer.error.code).toBe(true);
}

async function healthy(): Promise<void> {
  expect((await send('GET', '/v1/health', {})).status).toBe(200);
}

describe('the API request handling', () => {
  it('answers generated requests with a documented status and code, never a 500', async () => {
    await fuzz(
      'api: generated requests',
      200,
      fc.asyncProperty(method, path, headers, body, async (m, p, h, b) => {
        const answer = await send(m, p, h as Record<string, string>, b);
        checkAnswer(m, p, answer.status, answer.text);
        await healthy();
      }),
    );
  });

  it('answers byte mutations of valid raw requests with a status line or a closed connection, never a 500', async () => {
    const valid = [
      'POST /v1/plugins/example.hello/call/greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nyou',
      'GET /v1/plugins/example.hello HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST /v1/plugins/example.hello/call/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    ].map((t) => Buffer.from(t));
    await fuzz(
      'api: mutated raw requests',
      200,
      fc.asyncProperty(fc.constantFrom(...valid).chain(mutated), async (bytes) => {
        // Then line ends enough to end any header block and fill any body the API accepts (64 KiB): the server
        // has a whole request to answer or refuse, and never waits for more (its request timeout is 60 s).
        const text = await raw(Buffer.concat([bytes, FILLER]));
        if (text !== '') {
          const status = /^HTTP\/1\.1 (\d{3}) /.exec(text);
          expect(status, text.slice(0, 200)).not.toBeNull();
          expect(Number(status?.[1]), text.slice(0, 300)).not.toBe(500);
        }
        await healthy();
      }),
    );
  });

  // Found by the generated requests: a GET sent with a body but no Content-Length ends at its headers, so the body's
  // bytes were parsed as a next request and answered with a 400 after the `Connection: close` answer to the GET
  // (a client's parser refuses that: "Data after Connection: close").
  it('answers nothing after an answer that closed the connection', async () => {
    const text = await raw(
      Buffer.from('GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\u0000'),
    );
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
  });
});
