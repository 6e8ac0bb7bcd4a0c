// The call route's fast path (src/server/call-fast-path.ts): a plain call through the API's socket is answered
// without fastify's request lifecycle, and every answer is the one the route gives through fastify. Over a real
// TenantRegistry (mode none, example.hello) with the real Authenticator and TokenStore. A call's path with a `?`
// (an empty query) is the same call through fastify: each case is sent both ways and the answers compared.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/audit.js';
import { subscribeAudit } from '../../src/events/audit.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { buildApi, listenOnSocket } from '../../src/server/api-server.js';
import { Authenticator } from '../../src/server/auth.js';
import { TenantRegistry } from '../../src/tenants/registry.js';
import { TokenStore } from '../../src/tenants/tokens.js';
import { REPO } from '../helpers/cli.js';
import { lastingDir, tempDir } from '../helpers/plugin-tree.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(
  socketPath: string,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'POST', path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Requests whose route handler fastify ran (its tracing channel: no hook is added to the app for it). */
let handled = 0;
const onHandler = () => {
  handled++;
};
const CHANNEL = 'tracing:fastify.request.handler:start';

describe('serve API: the call route’s fast path', () => {
  let registry: TenantRegistry;
  let app: FastifyInstance;
  let socket: string;
  let tokenA: string;
  const audits: AuditEvent[] = [];
  let unsubscribeAudit: () => void;

  beforeAll(async () => {
    const dir = tempDir('reed-fast-path-');
    for (const d of ['plugins-d', 'plugins-a', 'plugins-q']) {
      mkdirSync(join(dir, d));
      cpSync(join(REPO, 'examples/plugins/hello'), join(dir, d, 'hello'), { recursive: true });
    }
    writeFileSync(
      join(dir, 'reed.toml'),
      'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\ndefault_search_paths = false\n' +
        'plugin_dirs = ["plugins-d"]\n[signatures]\nrequire = "none"\n' +
        '[tenants.a]\nplugin_dirs = ["plugins-a"]\n[tenants.b]\nplugin_dirs = ["plugins-a"]\n' +
        '[tenants.q]\nplugin_dirs = ["plugins-q"]\n[tenants.q.quotas]\ncalls_per_second = 0.001\ncalls_burst = 2\n',
    );
    const config = loadHostConfig({ cwd: dir, env: {}, home: dir });
    registry = await TenantRegistry.start({ config, logger: pino({ level: 'silent' }), forceMode: 'none' });
    const tokens = TokenStore.open(config.dataDir);
    tokenA = tokens.create({ kind: 'tenant', tenant: 'a' }).token;
    app = buildApi(registry, {
      maxInputBytes: 1024,
      logger: registry.logger,
      auth: new Authenticator({ tokens }),
    });
    socket = join(lastingDir('reed-fast-path-sock-'), 'api.sock');
    await app.ready();
    await listenOnSocket(app.server, socket);
    subscribe(CHANNEL, onHandler);
    unsubscribeAudit = subscribeAudit((e) => audits.push(e));
  });
  afterAll(async () => {
    unsubscribe(CHANNEL, onHandler);
    unsubscribeAudit();
    await app.close();
    await registry.close();
  });

  /**
   * The call sent plain (the fast path) and with an empty query (fastify): the same answer, and whether fastify ran
   * the plain one's handler. A refusal (`refused`) is answered before any handler, on both.
   */
  async function both(
    path: string,
    body: string | Uint8Array,
    headers: Record<string, string> = {},
    refused = false,
  ) {
    const before = handled;
    const plain = await send(socket, path, body, headers);
    const plainInFastify = handled - before;
    const viaFastify = await send(socket, `${path}?`, body, headers);
    expect(handled - before - plainInFastify, 'the call with a query went through fastify').toBe(
      refused ? 0 : 1,
    );
    const view = (a: Answer) => ({
      status: a.status,
      // A call's duration, and when to retry, are each answer's own.
      body: JSON.parse(a.body, (key, value) =>
        key === 'durationMs' || key === 'retryAfterMs'
          ? typeof value
          : key === 'message'
            ? String(value).replace(/\d+ ms/, 'N ms')
            : value,
      ),
      contentType: a.headers['content-type'],
      retryAfter: a.headers['retry-after'],
      authenticate: a.headers['www-authenticate'],
    });
    expect(view(plain)).toEqual(view(viaFastify));
    return { answer: view(plain), fast: refused ? undefined : plainInFastify === 0 };
  }

  it('answers a plain call without fastify, as the route does: output as text, as base64, escaped', async () => {
    const text = await both('/v1/plugins/example.hello/call/echo', 'hello');
    expect(text).toMatchObject({ fast: true, answer: { status: 200, body: { ok: true, output: 'hello' } } });
    expect(text.answer.body.outputEncoding).toBe('utf8');
    expect(text.answer.contentType).toBe('application/json; charset=utf-8');
    const binary = await both('/v1/plugins/example.hello/call/echo', new Uint8Array([0xff, 0, 1]));
    expect(binary).toMatchObject({
      fast: true,
      answer: { body: { output: '/wAB', outputEncoding: 'base64' } },
    });
    // The characters JSON leaves raw (DEL, C1, the separators, bidi controls) are escaped on both paths.
    const raw = await send(socket, '/v1/plugins/example.hello/call/echo', 'a\u007f\u2028\u202eb');
    expect(raw.body).toContain('a\\u007f\\u2028\\u202eb');
    const tenant = await both('/v1/tenants/a/plugins/example.hello/call/echo', 'x', {
      authorization: `Bearer ${tokenA}`,
    });
    expect(tenant).toMatchObject({ fast: true, answer: { status: 200, body: { output: 'x' } } });
  });

  it('answers a failed call with the same status, code and headers', async () => {
    const missing = await both('/v1/plugins/no.such/call/echo', '');
    expect(missing).toMatchObject({
      fast: true,
      answer: { status: 404, body: { error: { code: 'plugin_not_loaded' } } },
    });
    const fn = await both('/v1/plugins/example.hello/call/nothing', '');
    expect(fn).toMatchObject({
      fast: true,
      answer: { status: 404, body: { error: { code: 'function_not_found' } } },
    });
    // Tenant q's burst is 2: the plain call and its twin take it, the next two are refused, each with Retry-After.
    await both('/v1/tenants/q/plugins/example.hello/call/echo', 'x');
    const refused = await both('/v1/tenants/q/plugins/example.hello/call/echo', 'x');
    expect(refused).toMatchObject({
      fast: true,
      answer: { status: 429, body: { error: { code: 'quota_exceeded' } } },
    });
    expect(Number(refused.answer.retryAfter)).toBeGreaterThan(0);
  });

  it('leaves every refusal to fastify: 401 with WWW-Authenticate, another tenant 404 audited, 413', async () => {
    const bad = await both(
      '/v1/plugins/example.hello/call/echo',
      'x',
      { authorization: 'Bearer nope' },
      true,
    );
    expect(bad).toMatchObject({
      answer: { status: 401, authenticate: 'Bearer', body: { error: { code: 'unauthenticated' } } },
    });
    audits.length = 0;
    const other = await both(
      '/v1/tenants/b/plugins/example.hello/call/echo',
      'x',
      { authorization: `Bearer ${tokenA}` },
      true,
    );
    expect(other).toMatchObject({
      answer: { status: 404, body: { error: { code: 'tenant_not_found' } } },
    });
    expect(audits.map((e) => [e.kind, e.status, e.tenant])).toEqual([
      ['denied', 404, 'b'],
      ['denied', 404, 'b'],
    ]);
    const large = await both('/v1/plugins/example.hello/call/echo', 'x'.repeat(1025));
    expect(large).toMatchObject({
      fast: false,
      answer: { status: 413, body: { error: { code: 'request_too_large' } } },
    });
  });
});

describe('serve API: a hook added to the app', () => {
  it('keeps every call in fastify, so that the hook runs for it', async () => {
    const dir = tempDir('reed-fast-path-hook-');
    mkdirSync(join(dir, 'plugins'));
    cpSync(join(REPO, 'examples/plugins/hello'), join(dir, 'plugins', 'hello'), { recursive: true });
    writeFileSync(
      join(dir, 'reed.toml'),
      'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\ndefault_search_paths = false\n' +
        'plugin_dirs = ["plugins"]\n[signatures]\nrequire = "none"\n',
    );
    const config = loadHostConfig({ cwd: dir, env: {}, home: dir });
    const registry = await TenantRegistry.start({
      config,
      logger: pino({ level: 'silent' }),
      forceMode: 'none',
    });
    const app = buildApi(registry, { maxInputBytes: 1024, logger: registry.logger });
    const seen: string[] = [];
    app.addHook('onResponse', async (request, reply) => {
      seen.push(`${request.url} ${reply.statusCode}`);
    });
    const socket = join(lastingDir('reed-fast-path-hook-sock-'), 'api.sock');
    try {
      await app.ready();
      await listenOnSocket(app.server, socket);
      const answer = await send(socket, '/v1/plugins/example.hello/call/echo', 'x');
      expect(answer.status).toBe(200);
      expect(seen).toEqual(['/v1/plugins/example.hello/call/echo 200']);
    } finally {
      await app.close();
      await registry.close();
    }
  });
});
