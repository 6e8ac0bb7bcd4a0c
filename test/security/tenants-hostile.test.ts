import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/server/api-server.js';
import { Authenticator } from '../../src/server/auth.js';
import { DEFAULT_BODIES_PER_TENANT } from '../../src/server/call-route.js';
import {
  clientKey,
  listenTls,
  MAX_TLS_CONNECTIONS,
  MAX_TLS_CONNECTIONS_PER_ADDRESS,
} from '../../src/server/tls-listener.js';
import { AuditLog } from '../../src/tenants/audit-log.js';
import type { TenantDirectory } from '../../src/tenants/tenant.js';
import { TokenStore } from '../../src/tenants/tokens.js';
import { makeTestPki } from '../helpers/tls.js';

// Adversarial review of the tenant API (issue 14): a tenant token (or none) against the API's own fastify app
// (buildApi) with the real Authenticator and a real TokenStore on disk, over a stand-in directory of tenants that
// records every lifecycle action it is asked for. What is proved is who reaches what.

const dirs: string[] = [];
const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface World {
  app: FastifyInstance;
  tokens: TokenStore;
  tenants: Set<string>;
  /** Lifecycle actions the directory was asked for: `install default/x`, `create gone`. */
  actions: string[];
}

async function world(initial: string[], tokens?: TokenStore): Promise<World> {
  const tenants = new Set(initial);
  const actions: string[] = [];
  const tenant = (id: string) => ({
    id,
    origin: id === 'default' ? 'default' : 'runtime',
    spec: id === 'tight' ? { quotas: { max_concurrent_calls: 2 } } : {},
    call: async (p: string) => {
      actions.push(`call ${id}/${p}`);
      return { output: new Uint8Array(0), stats: {} };
    },
    status: () => [],
    host: {
      pluginStatus: (p: string) => {
        throw Object.assign(new Error(`no ${p}`), { code: 'plugin_not_loaded' });
      },
    },
    install: async (p: string, archive: Readable) => {
      actions.push(`install ${id}/${p}`);
      archive.resume();
      return { id: p };
    },
    remove: async (p: string) => {
      actions.push(`remove ${id}/${p}`);
      return [p];
    },
    reload: async (p: string) => {
      actions.push(`reload ${id}/${p}`);
      return { id: p };
    },
  });
  const directory = {
    get: (id: string) => (tenants.has(id) ? tenant(id) : undefined),
    list: () => [...tenants].map(tenant),
    create: async (id: string) => {
      actions.push(`create ${id}`);
      tenants.add(id);
      return tenant(id);
    },
    remove: async (id: string) => {
      actions.push(`delete ${id}`);
      tenants.delete(id);
    },
    usage: () => ({}),
    close: async () => {},
  } as unknown as TenantDirectory;
  const dir = mkdtempSync(join(tmpdir(), 'reed-adv-'));
  dirs.push(dir);
  const store = tokens ?? TokenStore.open(join(dir, 'data'));
  const app = buildApi(directory, {
    maxInputBytes: 1024,
    logger: { error: () => {} },
    auth: new Authenticator({ tokens: store }),
  }) as unknown as FastifyInstance;
  apps.push(app);
  await app.ready();
  return { app, tokens: store, tenants, actions };
}

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

describe('a default-tenant token', () => {
  it('cannot install, remove or reload the default tenant’s plugins through /v1/tenants/default (the admin’s)', async () => {
    const w = await world(['default', 'acme']);
    const { token } = w.tokens.create({ kind: 'tenant', tenant: 'default' });
    // The admin route of the same action is refused...
    const direct = await w.app.inject({
      method: 'PUT',
      url: '/v1/admin/plugins/evil',
      headers: { ...bearer(token), 'content-type': 'application/x-tar' },
      payload: Buffer.alloc(512),
    });
    expect(direct.statusCode).toBe(403);
    // ...and so are its spellings under /v1/tenants/default.
    for (const [method, url] of [
      ['PUT', '/v1/tenants/default/plugins/evil'],
      ['PUT', '/v1/tenants/%64efault/plugins/evil'],
      ['DELETE', '/v1/tenants/default/plugins/seo'],
      ['POST', '/v1/tenants/default/plugins/seo/reload'],
    ] as const) {
      const res = await w.app.inject({
        method,
        url,
        headers: { ...bearer(token), 'content-type': 'application/x-tar' },
        ...(method === 'PUT' ? { payload: Buffer.alloc(512) } : {}),
      });
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json().error.code).toBe('forbidden');
    }
    expect(w.actions).toEqual([]);
    // It still reads its plugins (the tenant route it is given).
    const list = await w.app.inject({
      method: 'GET',
      url: '/v1/tenants/default/plugins',
      headers: bearer(token),
    });
    expect(list.statusCode).toBe(200);
  });

  it('a tenant token still installs within its own tenant', async () => {
    const w = await world(['default', 'acme']);
    const { token } = w.tokens.create({ kind: 'tenant', tenant: 'acme' });
    const res = await w.app.inject({
      method: 'PUT',
      url: '/v1/tenants/acme/plugins/seo',
      headers: { ...bearer(token), 'content-type': 'application/x-tar' },
      payload: Buffer.alloc(512),
    });
    expect(res.statusCode).toBe(200);
    expect(w.actions).toEqual(['install acme/seo']);
  });
});

describe('tokens of a tenant that is gone', () => {
  it('do not reach a later tenant of the same id made through the API', async () => {
    // A tenant "acme" of reed.toml had a token; acme was then taken out of reed.toml (no DELETE: its tokens were
    // never revoked). The admin later creates a runtime tenant "acme" for someone else.
    const w = await world(['default']);
    const { token } = w.tokens.create({ kind: 'tenant', tenant: 'acme' });
    const put = await w.app.inject({
      method: 'PUT',
      url: '/v1/admin/tenants/acme',
      headers: { 'content-type': 'application/json' },
      payload: '{}',
      // An admin: the Unix socket's peer without an admin token file (inject has an address: give a stored admin).
    });
    // inject's peer is TCP, so the admin needs a token.
    expect(put.statusCode).toBe(401);
    const admin = w.tokens.create({ kind: 'admin' }).token;
    const created = await w.app.inject({
      method: 'PUT',
      url: '/v1/admin/tenants/acme',
      headers: { ...bearer(admin), 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(created.statusCode).toBe(200);
    expect(w.actions).toEqual(['create acme']);
    const res = await w.app.inject({
      method: 'GET',
      url: '/v1/tenants/acme/plugins',
      headers: bearer(token),
    });
    expect(res.statusCode).toBe(401);
  });

  it('are revoked when the API starts over a directory without their tenant', async () => {
    const first = await world(['default', 'acme']);
    const { token } = first.tokens.create({ kind: 'tenant', tenant: 'acme' });
    const kept = first.tokens.create({ kind: 'tenant', tenant: 'default' }).token;
    // serve restarts with acme gone from reed.toml: the same token store, a directory without acme.
    const again = await world(['default'], TokenStore.open(join(first.tokens.dir, '..')));
    expect(again.tokens.verify(token)).toBeUndefined();
    expect(again.tokens.verify(kept)?.scope).toEqual({ kind: 'tenant', tenant: 'default' });
  });
});

describe('the TCP listener (--listen) against anyone who reaches its port', () => {
  it('holds at most MAX_TLS_CONNECTIONS connections: more are closed at once, not kept (serve’s descriptors are everyone’s)', async () => {
    const pki = makeTestPki();
    dirs.push(pki.dir);
    const server = await listenTls((_req, res) => res.end('{}'), {
      host: '127.0.0.1',
      port: 0,
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      maxHeaderSize: 16 * 1024,
      requestTimeoutMs: 60_000,
    });
    const port = (server.address() as import('node:net').AddressInfo).port;
    const sockets: Socket[] = [];
    try {
      // Connections that never even start a handshake (no bytes at all): each held one descriptor of serve's.
      const extra = 8;
      const closedByServer: Promise<void>[] = [];
      for (let i = 0; i < MAX_TLS_CONNECTIONS + extra; i++) {
        // From 32 loopback addresses: each holds fewer than MAX_TLS_CONNECTIONS_PER_ADDRESS.
        const socket = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 32)}` });
        socket.on('error', () => {});
        sockets.push(socket);
        closedByServer.push(new Promise((resolve) => socket.once('close', () => resolve())));
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('error', reject);
        });
      }
      // Exactly the extra ones are closed by the server (before the bound, none was: this waited forever)...
      await Promise.all(closedByServer.slice(MAX_TLS_CONNECTIONS));
      // ...and the rest are still held.
      const held = await new Promise<number>((resolve, reject) =>
        server.getConnections((error, n) => (error ? reject(error) : resolve(n))),
      );
      expect(held).toBe(MAX_TLS_CONNECTIONS);
    } finally {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);

  it('holds at most MAX_TLS_CONNECTIONS_PER_ADDRESS from one client: one more is closed, another client still connects', async () => {
    const pki = makeTestPki();
    dirs.push(pki.dir);
    const server = await listenTls((_req, res) => res.end('{}'), {
      host: '127.0.0.1',
      port: 0,
      certFile: pki.serverCert,
      keyFile: pki.serverKey,
      maxHeaderSize: 16 * 1024,
      requestTimeoutMs: 60_000,
    });
    const port = (server.address() as import('node:net').AddressInfo).port;
    const sockets: Socket[] = [];
    const open = async (localAddress: string) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress });
      socket.on('error', () => {});
      sockets.push(socket);
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('error', reject);
      });
      // Wrapped: an async function returning the promise itself would wait for it.
      return { closed };
    };
    try {
      for (let i = 0; i < MAX_TLS_CONNECTIONS_PER_ADDRESS; i++) await open('127.0.0.1');
      // One more from the same client: closed by the server (before: held, up to MAX_TLS_CONNECTIONS from one client).
      await (await open('127.0.0.1')).closed;
      // Another client: held, and served.
      await open('127.0.0.2');
      const held = await new Promise<number>((resolve, reject) =>
        server.getConnections((error, n) => (error ? reject(error) : resolve(n))),
      );
      expect(held).toBe(MAX_TLS_CONNECTIONS_PER_ADDRESS + 1);
    } finally {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);

  it('counts an IPv6 client by its /64 and an IPv4-mapped one by its IPv4 address', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe(clientKey('2001:0db8:0001:0002:ffff:1:2:3'));
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(clientKey('10.0.0.1')).toBe('10.0.0.1');
  });
});

/** An audit log under a fresh directory, small enough to rotate within a test (2 x 64 KiB). */
function smallAuditLog(): { dir: string; log: AuditLog } {
  const dir = mkdtempSync(join(tmpdir(), 'reed-adv-audit-'));
  dirs.push(dir);
  const log = new AuditLog(join(dir, 'audit'), { maxBytes: 64 * 1024, maxFiles: 1 });
  log.start();
  return { dir, log };
}

/** Every line the audit log under `dir` kept, oldest file first, parsed. */
function auditLines(dir: string): unknown[] {
  return readdirSync(join(dir, 'audit'))
    .sort()
    .reverse()
    .flatMap((name) =>
      readFileSync(join(dir, 'audit', name), 'utf8')
        .split('\n')
        .filter(Boolean),
    )
    .map((l) => JSON.parse(l) as unknown);
}

describe('the audit log against a client without a token', () => {
  it('keeps the admin actions however many 401s are sent: denials past a bucket are counted on one line', () => {
    const { dir, log } = smallAuditLog();
    const base = {
      time: new Date().toISOString(),
      transport: 'tcp' as const,
      tenant: 'acme',
      plugin: undefined,
      tokenId: undefined as string | undefined,
      status: 200,
    };
    log.write({
      ...base,
      kind: 'done',
      principal: 'admin',
      tokenId: 'admin',
      method: 'DELETE',
      route: '/v1/admin/tenants/acme',
      outcome: 'ok',
    });
    // What an anonymous client's requests publish, one per 401: 5,000 of them (about 1.4 MB of lines), more than
    // the log keeps (2 x 64 KiB here; 60 MiB by default).
    for (let n = 0; n < 5_000; n++)
      log.write({
        ...base,
        kind: 'denied',
        principal: 'anonymous',
        method: 'GET',
        route: `/v1/admin/tenants/${'x'.repeat(100)}${n}`,
        status: 401,
        outcome: 'unauthenticated',
      });
    log.write({
      ...base,
      kind: 'done',
      principal: 'admin',
      tokenId: 'admin',
      method: 'PUT',
      route: '/v1/admin/tenants/bravo',
      outcome: 'ok',
    });
    log.close();
    const lines = auditLines(dir) as { kind: string; route?: string; count?: number }[];
    const done = lines.filter((l) => l.kind === 'done').map((l) => l.route);
    expect(done).toEqual(['/v1/admin/tenants/acme', '/v1/admin/tenants/bravo']);
    const written = lines.filter((l) => l.kind === 'denied').length;
    const suppressed = lines.filter((l) => l.kind === 'suppressed').reduce((a, l) => a + (l.count ?? 0), 0);
    expect(written + suppressed).toBe(5_000);
    expect(written).toBeGreaterThanOrEqual(100);
  });
});

describe('the audit log against a tenant’s failed actions', () => {
  it('keeps the admin actions however many failed installs a tenant sends: past its bucket they are counted', () => {
    // The sixth review: a tenant token's PUT /v1/tenants/acme/plugins/<1,000 x> with a wrong content type (415) is
    // a tenant action, always written: ~2,750 a second rotated the admin's lines out of the log within a minute.
    const { dir, log } = smallAuditLog();
    const base = {
      time: new Date().toISOString(),
      transport: 'unix' as const,
      plugin: undefined,
      method: 'PUT',
    };
    const admin = (route: string) =>
      log.write({
        ...base,
        kind: 'done',
        principal: 'admin',
        tokenId: 'admin',
        tenant: undefined,
        route,
        status: 200,
        outcome: 'ok',
      });
    const failed = (tenant: string, n: number) =>
      log.write({
        ...base,
        kind: 'done',
        principal: 'tenant',
        tokenId: `t-${tenant}`,
        tenant,
        route: `/v1/tenants/${tenant}/plugins/${'x'.repeat(1_000)}${n}`,
        status: 415,
        outcome: 'FST_ERR_CTP_INVALID_MEDIA_TYPE',
      });
    admin('/v1/admin/tenants/acme');
    for (let n = 0; n < 5_000; n++) failed('acme', n);
    failed('bravo', 0);
    admin('/v1/admin/tenants/charlie');
    // A tenant's successful action is always written.
    log.write({
      ...base,
      kind: 'done',
      principal: 'tenant',
      tokenId: 't-acme',
      tenant: 'acme',
      route: '/v1/tenants/acme/plugins/p',
      status: 200,
      outcome: 'ok',
    });
    log.close();
    const lines = auditLines(dir) as {
      kind: string;
      route?: string;
      tenant?: string;
      status?: number;
      count?: number;
      outcome?: string;
    }[];
    expect(lines.filter((l) => l.kind === 'done' && l.status === 200).map((l) => l.route)).toEqual([
      '/v1/admin/tenants/acme',
      '/v1/admin/tenants/charlie',
      '/v1/tenants/acme/plugins/p',
    ]);
    const written = lines.filter((l) => l.kind === 'done' && l.tenant === 'acme' && l.status === 415).length;
    const suppressed = lines
      .filter((l) => l.kind === 'suppressed' && l.outcome === 'failed' && l.tenant === 'acme')
      .reduce((a, l) => a + (l.count ?? 0), 0);
    expect(written + suppressed).toBe(5_000);
    expect(written).toBeGreaterThanOrEqual(100);
    expect(written).toBeLessThan(200);
    // Another tenant's failed action has a bucket of its own.
    expect(lines.filter((l) => l.tenant === 'bravo' && l.status === 415)).toHaveLength(1);
  });
});

describe('call bodies against max_concurrent_calls', () => {
  it('a tenant cannot hold more bodies being read than its max_concurrent_calls (each up to maxInputBytes of the host’s memory)', async () => {
    const w = await world(['default', 'tight']);
    const { token } = w.tokens.create({ kind: 'tenant', tenant: 'tight' });
    const dir = mkdtempSync(join(tmpdir(), 'reed-adv-sock-'));
    dirs.push(dir);
    const path = join(dir, 'api.sock');
    await w.app.listen({ path });
    const sockets: Socket[] = [];
    try {
      // Calls whose bodies never end: 1,000 bytes declared, 10 sent. Before, each was read (and kept) whatever the
      // quota, since the quota was judged only once the body was in.
      const open = () => {
        const socket = connect(path);
        socket.on('error', () => {});
        sockets.push(socket);
        let answer = '';
        socket.on('data', (d: Buffer) => {
          answer += d.toString();
        });
        const answered = new Promise<string>((resolve) => socket.once('end', () => resolve(answer)));
        socket.write(
          `POST /v1/tenants/tight/plugins/seo/call/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(10)}`,
        );
        return answered;
      };
      open();
      open();
      // Both are being read: a request on another connection answers after them (requests are handled in order).
      const probe = await w.app.inject({ method: 'GET', url: '/v1/health' });
      expect(probe.statusCode).toBe(200);
      const third = await open();
      expect(third).toMatch(/^HTTP\/1.1 429 /);
      expect(third).toContain('"quota":"max_concurrent_calls"');
      expect(w.actions).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      // The server notices the two bodies' ends on its own time: close ends them now.
      w.app.server.closeAllConnections();
    }
  });

  it('a tenant without max_concurrent_calls is bounded by the host-wide default (DEFAULT_BODIES_PER_TENANT)', async () => {
    const w = await world(['default', 'loose']);
    const { token } = w.tokens.create({ kind: 'tenant', tenant: 'loose' });
    const dir = mkdtempSync(join(tmpdir(), 'reed-adv-sock-'));
    dirs.push(dir);
    const path = join(dir, 'api.sock');
    await w.app.listen({ path });
    const sockets: Socket[] = [];
    try {
      const open = () => {
        const socket = connect(path);
        socket.on('error', () => {});
        sockets.push(socket);
        let answer = '';
        socket.on('data', (d: Buffer) => {
          answer += d.toString();
        });
        const answered = new Promise<string>((resolve) => socket.once('end', () => resolve(answer)));
        socket.write(
          `POST /v1/tenants/loose/plugins/seo/call/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(10)}`,
        );
        return answered;
      };
      for (let i = 0; i < DEFAULT_BODIES_PER_TENANT; i++) open();
      const probe = await w.app.inject({ method: 'GET', url: '/v1/health' });
      expect(probe.statusCode).toBe(200);
      // One more: refused before it is read (before: read, as every one after it, without a bound).
      const next = await open();
      expect(next).toMatch(/^HTTP\/1.1 429 /);
      expect(next).toContain(`"limit":${DEFAULT_BODIES_PER_TENANT}`);
      expect(w.actions).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      w.app.server.closeAllConnections();
    }
  });
});
