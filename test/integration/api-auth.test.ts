import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEvent, subscribeAudit } from '../../src/events/audit.js';
import { buildApi } from '../../src/server/api-server.js';
import { Authenticator } from '../../src/server/auth.js';
import { listenTls } from '../../src/server/tls-listener.js';
import type { TenantDirectory } from '../../src/tenants/tenant.js';
import { AdminToken, TokenStore } from '../../src/tenants/tokens.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

// The authentication and authorization hook and the token routes on a real fastify app, over a real Unix socket
// and a real TLS listener (certificates made by openssl here), on the API's own fastify app (buildApi) over a
// stand-in directory of tenants without plugins: what is proved is who reaches which route.

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: {
    ok: boolean;
    error?: { code: string; message: string };
    token?: string;
    id?: string;
    tokens?: { id: string; created: string }[];
    tenant?: string;
  };
  text: string;
}

type Via = { socketPath: string } | { port: number; ca: Buffer; cert?: Buffer; key?: Buffer };

function call(via: Via, method: string, path: string, token?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text), text });
        } catch (error) {
          reject(error);
        }
      });
      res.on('error', reject);
    };
    const req =
      'socketPath' in via
        ? httpRequest({ socketPath: via.socketPath, method, path, headers }, onResponse)
        : httpsRequest(
            {
              host: '127.0.0.1',
              port: via.port,
              method,
              path,
              headers,
              ca: via.ca,
              ...(via.cert === undefined ? {} : { cert: via.cert, key: via.key }),
              agent: false,
            },
            onResponse,
          );
    req.on('error', reject);
    req.end();
  });
}

const TENANTS = new Set(['default', 'acme', 'bravo']);
/** A stand-in directory: tenants without plugins (the routes answer an empty list). */
const directory = {
  get: (id: string) =>
    TENANTS.has(id) ? { id, origin: 'api', spec: {}, status: () => [], host: {} } : undefined,
  list: () => [],
  remove: async (id: string) => {
    TENANTS.delete(id);
  },
  close: async () => {},
} as unknown as TenantDirectory;

async function makeApp(auth: Authenticator): Promise<FastifyInstance> {
  const app = buildApi(directory, {
    maxInputBytes: 1024,
    logger: { error: () => {} },
    auth,
  }) as unknown as FastifyInstance;
  await app.ready();
  return app;
}

const ADMIN = 'A'.repeat(22) + 'b'.repeat(22);
const dirs: string[] = [];
const apps: FastifyInstance[] = [];
const servers: Server[] = [];
let pki: TestPki;
const audit: AuditEvent[] = [];
let unsubscribe: () => void;

beforeAll(() => {
  pki = makeTestPki();
  dirs.push(pki.dir);
  unsubscribe = subscribeAudit((e) => audit.push(e));
});
afterAll(() => {
  unsubscribe();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const a of apps.splice(0)) await a.close();
  audit.length = 0;
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'reed-auth-'));
  dirs.push(d);
  return d;
}

async function serve(withAdmin: boolean) {
  const dir = tmp();
  const tokens = TokenStore.open(join(dir, 'data'));
  let admin: AdminToken | undefined;
  if (withAdmin) {
    writeFileSync(join(dir, 'admin-token'), `${ADMIN}\n`, { mode: 0o600 });
    admin = AdminToken.fromFile(join(dir, 'admin-token'));
  }
  const auth = new Authenticator({ tokens, admin });
  const app = await makeApp(auth);
  apps.push(app);
  const socketPath = join(dir, 'api.sock');
  await app.listen({ path: socketPath });
  return { app, tokens, socketPath: { socketPath } };
}

describe('on the Unix socket', () => {
  it('with no admin token file, the peer without a token is admin; a token that is given is checked', async () => {
    const { socketPath, tokens } = await serve(false);
    expect((await call(socketPath, 'GET', '/v1/admin/tenants')).status).toBe(200);
    expect((await call(socketPath, 'GET', '/v1/tenants/acme/plugins')).status).toBe(200);
    const wrong = await call(socketPath, 'GET', '/v1/admin/tenants', 'reed_0000000000000000_x');
    expect(wrong.status).toBe(401);
    expect(wrong.body.error?.code).toBe('unauthenticated');
    expect(wrong.headers['www-authenticate']).toBe('Bearer');
    const { token } = tokens.create({ kind: 'tenant', tenant: 'acme' });
    expect((await call(socketPath, 'GET', '/v1/admin/tenants', token)).status).toBe(403);
    expect((await call(socketPath, 'GET', '/v1/tenants/acme/plugins', token)).status).toBe(200);
  });

  it('with an admin token file: none or a wrong token is 401, a tenant token on an admin route 403, another tenant 404 as a tenant that does not exist', async () => {
    const { socketPath, tokens } = await serve(true);
    const acme = tokens.create({ kind: 'tenant', tenant: 'acme' }).token;
    const def = tokens.create({ kind: 'tenant', tenant: 'default' }).token;

    expect((await call(socketPath, 'GET', '/v1/health')).status).toBe(200);
    for (const path of [
      '/v1/admin/tenants',
      '/v1/tenants/acme/plugins',
      '/v1/plugins',
      '/v1/nothing',
      '/v1/tenants/acme/tokens',
    ]) {
      const none = await call(socketPath, 'GET', path);
      expect([path, none.status, none.body.error?.code]).toEqual([path, 401, 'unauthenticated']);
      const wrong = await call(socketPath, 'GET', path, `${acme.slice(0, -2)}xx`);
      expect([path, wrong.status, wrong.body.error?.code]).toEqual([path, 401, 'unauthenticated']);
    }
    expect((await call(socketPath, 'GET', '/v1/admin/tenants', ADMIN)).status).toBe(200);
    expect((await call(socketPath, 'GET', '/v1/tenants/bravo/plugins', ADMIN)).status).toBe(200);

    const forbidden = await call(socketPath, 'GET', '/v1/admin/tenants', acme);
    expect([forbidden.status, forbidden.body.error?.code]).toEqual([403, 'forbidden']);
    expect((await call(socketPath, 'GET', '/v1/tenants/acme/plugins', acme)).body).toEqual({
      ok: true,
      plugins: [],
    });

    // Another tenant's routes answer exactly what a tenant that does not exist answers.
    const other = await call(socketPath, 'GET', '/v1/tenants/bravo/plugins', acme);
    const missing = await call(socketPath, 'GET', '/v1/tenants/nosuch/plugins', ADMIN);
    expect(other.status).toBe(404);
    expect(other.text.replace('bravo', 'X')).toBe(missing.text.replace('nosuch', 'X'));
    // Percent-encoding does not get round it.
    expect((await call(socketPath, 'GET', '/v1/tenants/%62ravo/plugins', acme)).status).toBe(404);
    // The default tenant's routes: its token or admin.
    expect((await call(socketPath, 'GET', '/v1/plugins', acme)).status).toBe(404);
    expect((await call(socketPath, 'GET', '/v1/plugins', def)).status).toBe(200);
    expect((await call(socketPath, 'GET', '/v1/tenants/acme/plugins', def)).status).toBe(404);
  });

  it('token routes: created and shown once, listed by id only, revoked (then 401), gone with their tenant; audited without the token', async () => {
    const { socketPath } = await serve(true);
    const made = await call(socketPath, 'POST', '/v1/admin/tenants/acme/tokens', ADMIN);
    expect(made.status).toBe(201);
    const token = made.body.token as string;
    expect(token).toMatch(/^reed_[0-9a-f]{16}_/);
    expect(made.headers['cache-control']).toBe('no-store');
    const id = made.body.id as string;
    expect((await call(socketPath, 'GET', '/v1/tenants/acme/plugins', token)).status).toBe(200);
    expect((await call(socketPath, 'POST', '/v1/admin/tenants/acme/tokens', token)).status).toBe(403);
    expect((await call(socketPath, 'POST', '/v1/admin/tenants/nosuch/tokens', ADMIN)).status).toBe(404);

    const listed = await call(socketPath, 'GET', '/v1/admin/tenants/acme/tokens', ADMIN);
    expect(listed.body.tokens?.map((t) => t.id)).toEqual([id]);
    expect(listed.text).not.toContain(token.slice(22));

    expect((await call(socketPath, 'DELETE', `/v1/admin/tenants/bravo/tokens/${id}`, ADMIN)).status).toBe(
      404,
    );
    expect((await call(socketPath, 'DELETE', `/v1/admin/tenants/acme/tokens/${id}`, ADMIN)).status).toBe(200);
    const gone = await call(socketPath, 'DELETE', `/v1/admin/tenants/acme/tokens/${id}`, ADMIN);
    expect([gone.status, gone.body.error?.code]).toEqual([404, 'token_not_found']);
    const revoked = await call(socketPath, 'GET', '/v1/tenants/acme/plugins', token);
    expect([revoked.status, revoked.body.error?.code]).toEqual([401, 'unauthenticated']);

    // Deleting the tenant revokes its tokens: made again later, it does not inherit them.
    const second = (await call(socketPath, 'POST', '/v1/admin/tenants/bravo/tokens', ADMIN)).body
      .token as string;
    expect((await call(socketPath, 'GET', '/v1/tenants/bravo/plugins', second)).status).toBe(200);
    expect((await call(socketPath, 'DELETE', '/v1/admin/tenants/bravo', ADMIN)).status).toBe(200);
    TENANTS.add('bravo');
    expect((await call(socketPath, 'GET', '/v1/tenants/bravo/plugins', second)).status).toBe(401);

    // The audit: every admin action and every denial, by token id, never the token.
    const text = JSON.stringify(audit);
    for (const secret of [token, token.slice(22), second, second.slice(22), ADMIN])
      expect(text).not.toContain(secret);
    const created = audit.find((e) => e.method === 'POST' && e.status === 201);
    expect(created).toMatchObject({
      kind: 'done',
      tokenId: 'admin',
      principal: 'admin',
      transport: 'unix',
      route: '/v1/admin/tenants/acme/tokens',
      tenant: 'acme',
      outcome: 'ok',
    });
    expect(audit.find((e) => e.kind === 'denied' && e.status === 403)).toMatchObject({
      tokenId: id,
      principal: 'tenant',
      outcome: 'forbidden',
      route: '/v1/admin/tenants/acme/tokens',
    });
    expect(audit.find((e) => e.kind === 'denied' && e.status === 401)).toMatchObject({
      tokenId: undefined,
      principal: 'anonymous',
      outcome: 'unauthenticated',
    });
    expect(audit.find((e) => e.kind === 'done' && e.outcome === 'token_not_found')).toMatchObject({
      status: 404,
    });
    // A tenant's own route is no admin action: not audited.
    expect(audit.some((e) => e.kind === 'done' && e.route.startsWith('/v1/tenants/'))).toBe(false);
  });
});

describe('on the TLS listener', () => {
  async function withTls(clientCa: boolean) {
    const { app, tokens } = await serve(false);
    const server = await listenTls(app.routing, {
      host: '127.0.0.1',
      port: 0,
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      clientCaFile: clientCa ? pki.caCert : undefined,
      maxHeaderSize: 16 * 1024,
      requestTimeoutMs: 60_000,
    });
    servers.push(server);
    return { port: (server.address() as AddressInfo).port, tokens };
  }

  it('always needs a token, even with no admin token file', async () => {
    const { port, tokens } = await withTls(false);
    const via = { port, ca: pki.read(pki.caCert) };
    const none = await call(via, 'GET', '/v1/admin/tenants');
    expect([none.status, none.body.error?.code]).toEqual([401, 'unauthenticated']);
    expect((await call(via, 'GET', '/v1/tenants/acme/plugins')).status).toBe(401);
    expect((await call(via, 'GET', '/v1/health')).status).toBe(200);
    const { token } = tokens.create({ kind: 'tenant', tenant: 'acme' });
    expect((await call(via, 'GET', '/v1/tenants/acme/plugins', token)).status).toBe(200);
    expect((await call(via, 'GET', '/v1/admin/tenants', token)).status).toBe(403);
    const admin = tokens.create({ kind: 'admin' }).token;
    expect((await call(via, 'GET', '/v1/admin/tenants', admin)).status).toBe(200);
    expect(audit.find((e) => e.status === 401)?.transport).toBe('tcp');
  });

  it('mutual TLS: a client certificate of the CA gets through; none, or one of another CA, is refused', async () => {
    const { port, tokens } = await withTls(true);
    const { token } = tokens.create({ kind: 'tenant', tenant: 'acme' });
    const ca = pki.read(pki.caCert);
    const good = { port, ca, cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) };
    expect((await call(good, 'GET', '/v1/tenants/acme/plugins', token)).status).toBe(200);
    await expect(call({ port, ca }, 'GET', '/v1/tenants/acme/plugins', token)).rejects.toThrow();
    const wrong = { port, ca, cert: pki.read(pki.otherClientCert), key: pki.read(pki.otherClientKey) };
    await expect(call(wrong, 'GET', '/v1/tenants/acme/plugins', token)).rejects.toThrow();
  });

  it('a server certificate the client does not trust fails the handshake (the client checks it)', async () => {
    const { port } = await withTls(false);
    await expect(call({ port, ca: pki.read(pki.serverCert) }, 'GET', '/v1/health')).rejects.toThrow();
  });

  it("refuses a key that is not the certificate's, and files that are not PEM", async () => {
    const handler = () => {};
    const base = { host: '127.0.0.1', port: 0, maxHeaderSize: 16384, requestTimeoutMs: 1000 };
    await expect(
      listenTls(handler, { ...base, certFile: pki.serverCert, keyFile: pki.clientKey }),
    ).rejects.toMatchObject({ code: 'tls_invalid' });
    await expect(
      listenTls(handler, { ...base, certFile: join(pki.dir, 'server.ext'), keyFile: pki.serverKey }),
    ).rejects.toMatchObject({ code: 'tls_invalid' });
    await expect(
      listenTls(handler, { ...base, certFile: join(pki.dir, 'none.pem'), keyFile: pki.serverKey }),
    ).rejects.toMatchObject({ code: 'tls_invalid' });
  });
});
