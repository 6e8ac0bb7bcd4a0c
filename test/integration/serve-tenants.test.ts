// The serve API's tenant routes and OpenAPI document, over a real TenantRegistry (mode none) on a real socket.
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import { createTenantApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { api, startServe } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { tarDir } from '../helpers/tar.js';
import { type Fixture, NOTES, startRegistry } from '../helpers/tenants.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown> & { ok: boolean; error?: { code: string; message: string } };
}

/** One request with its headers; `as` names the tenant whose principal sends it (the test's authenticate). */
function send(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: JSON.parse(Buffer.concat(chunks).toString()),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('serve API: tenant routes (mode none, TenantRegistry)', () => {
  let fixture: Fixture;
  let socket: string;
  let close: () => Promise<void>;
  let openapi: {
    openapi: string;
    paths: Record<string, Record<string, { responses: Record<string, { content?: unknown }> }>>;
    components: { schemas: Record<string, unknown> };
  };
  const checked: string[] = [];

  /** The answer, checked against the OpenAPI document's schema for that route, method and status. */
  async function call(
    method: string,
    path: string,
    body?: string | Uint8Array,
    headers: Record<string, string> = {},
  ): Promise<Answer> {
    const answer = await send(socket, method, path, body, headers);
    const route = Object.keys(openapi.paths).find((p) =>
      new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path.split('?')[0] as string),
    );
    const schema = (
      openapi.paths[route as string]?.[method.toLowerCase()]?.responses[String(answer.status)]?.content as
        | Record<string, { schema: object }>
        | undefined
    )?.['application/json']?.schema;
    expect(schema, `${method} ${path} ${answer.status} is in the document`).toBeDefined();
    const ajv = new Ajv({ strict: false, validateFormats: false });
    const validate = ajv.compile({ ...schema, components: openapi.components });
    expect(validate(answer.body), `${method} ${path}: ${JSON.stringify(validate.errors)}`).toBe(true);
    checked.push(`${method} ${route} ${answer.status}`);
    return answer;
  }

  beforeAll(async () => {
    fixture = await startRegistry(
      'none',
      '[tenants.q]\nplugin_dirs = ["plugins-a"]\n[tenants.q.quotas]\ncalls_per_second = 0.001\ncalls_burst = 1\n',
    );
    const server = createTenantApiServer(fixture.registry, {
      maxInputBytes: 1024,
      logger: fixture.registry.logger,
      // The test's own principals: `x-as: a` is tenant a's, none is admin (T-auth's tokens do this for real).
      authenticate: (req) => {
        const as = req.headers['x-as'];
        if (as === undefined) return { admin: true };
        if (typeof as !== 'string') throw new ReedError('unauthenticated', 'one x-as');
        return { admin: false, tenant: as };
      },
    });
    socket = join(lastingDir('reed-serve-tenants-'), 'api.sock');
    await listenOnSocket(server, socket);
    close = async () => {
      await new Promise((resolve) => server.close(resolve));
      await fixture.registry.close();
    };
    const doc = await send(socket, 'GET', '/v1/openapi.json');
    expect(doc.status).toBe(200);
    openapi = doc.body as unknown as typeof openapi;
  });
  afterAll(() => close());

  it('serves an OpenAPI 3 document naming every route, method and answer', () => {
    expect(openapi.openapi).toMatch(/^3\./);
    for (const [path, methods] of [
      ['/v1/health', ['get']],
      ['/v1/plugins', ['get']],
      ['/v1/plugins/{id}', ['get']],
      ['/v1/plugins/{id}/call/{fn}', ['post']],
      ['/v1/admin/plugins/{id}', ['put', 'delete']],
      ['/v1/admin/plugins/{id}/reload', ['post']],
      ['/v1/tenants/{tenant}/plugins', ['get']],
      ['/v1/tenants/{tenant}/plugins/{id}', ['get', 'put', 'delete']],
      ['/v1/tenants/{tenant}/plugins/{id}/call/{fn}', ['post']],
      ['/v1/tenants/{tenant}/plugins/{id}/reload', ['post']],
      ['/v1/tenants/{tenant}/usage', ['get']],
      ['/v1/admin/tenants', ['get']],
      ['/v1/admin/tenants/{tenant}', ['get', 'put', 'delete']],
      ['/v1/admin/removed-tenants', ['get']],
      ['/v1/admin/removed-tenants/{tenant}', ['delete']],
    ] as const)
      expect(Object.keys(openapi.paths[path] ?? {}).sort(), path).toEqual([...methods].sort());
    expect(openapi.components.schemas).toHaveProperty('Error');
    expect(openapi.components.schemas).toHaveProperty('PluginStatus');
  });

  it('two tenants with the same plugin id: each route reaches its own tenant’s plugin', async () => {
    for (const t of ['a', 'b']) {
      const list = await call('GET', `/v1/tenants/${t}/plugins`);
      expect(list.status).toBe(200);
      expect((list.body.plugins as { id: string }[]).map((p) => p.id)).toEqual([NOTES]);
      expect((await call('POST', `/v1/tenants/${t}/plugins/${NOTES}/call/put`, `k=from-${t}`)).status).toBe(
        200,
      );
    }
    expect((await call('POST', `/v1/tenants/a/plugins/${NOTES}/call/get`, 'k')).body.output).toBe('from-a');
    expect((await call('POST', `/v1/tenants/b/plugins/${NOTES}/call/get`, 'k')).body.output).toBe('from-b');
    expect((await call('GET', `/v1/tenants/b/plugins/${NOTES}`)).body.plugin).toMatchObject({
      id: NOTES,
      state: 'ready',
      mode: 'none',
    });
    // The default tenant (the routes of before tenants) holds none of them.
    expect((await call('GET', '/v1/plugins')).body.plugins).toEqual([]);
    expect(await call('POST', `/v1/plugins/${NOTES}/call/get`, 'k')).toMatchObject({
      status: 404,
      body: { error: { code: 'plugin_not_loaded' } },
    });
    const usage = await call('GET', '/v1/tenants/a/usage');
    expect(usage.body.usage).toMatchObject({ tenant: 'a', plugins: { [NOTES]: { calls: { ok: 2 } } } });
  });

  it('an unknown tenant is 404 tenant_not_found on every tenant route', async () => {
    for (const [method, path] of [
      ['GET', '/v1/tenants/nosuch/plugins'],
      ['GET', `/v1/tenants/nosuch/plugins/${NOTES}`],
      ['POST', `/v1/tenants/nosuch/plugins/${NOTES}/call/get`],
      ['GET', '/v1/tenants/nosuch/usage'],
      ['GET', '/v1/admin/tenants/nosuch'],
      ['DELETE', `/v1/tenants/nosuch/plugins/${NOTES}`],
    ] as const)
      expect(await call(method, path, ''), `${method} ${path}`).toMatchObject({
        status: 404,
        body: { ok: false, error: { code: 'tenant_not_found' } },
      });
  });

  it('a tenant principal reaches its own tenant only: another tenant is 404 as if absent, admin routes 403', async () => {
    const asA = { 'x-as': 'a' };
    expect((await call('POST', `/v1/tenants/a/plugins/${NOTES}/call/get`, 'k', asA)).body.output).toBe(
      'from-a',
    );
    const other = await call('POST', `/v1/tenants/b/plugins/${NOTES}/call/get`, 'k', asA);
    const absent = await call('POST', `/v1/tenants/nosuch/plugins/${NOTES}/call/get`, 'k', asA);
    expect(other).toMatchObject({ status: 404, body: { error: { code: 'tenant_not_found' } } });
    expect(absent.status).toBe(other.status);
    expect(String(absent.body.error?.message).replace('nosuch', 'b')).toBe(other.body.error?.message);
    // The routes of before tenants are the default tenant's: not a's.
    expect(await call('GET', '/v1/plugins', undefined, asA)).toMatchObject({ status: 404 });
    for (const [method, path] of [
      ['GET', '/v1/admin/tenants'],
      ['PUT', '/v1/admin/tenants/a'],
      ['DELETE', '/v1/admin/tenants/b'],
      ['PUT', `/v1/admin/plugins/${NOTES}`],
    ] as const)
      expect(await call(method, path, undefined, asA), `${method} ${path}`).toMatchObject({
        status: 403,
        body: { error: { code: 'forbidden' } },
      });
    expect((await call('GET', '/v1/health', undefined, asA)).status).toBe(200);
  });

  it('a quota answers 429 quota_exceeded with Retry-After; the other tenant’s calls keep succeeding', async () => {
    expect((await call('POST', `/v1/tenants/q/plugins/${NOTES}/call/put`, 'k=q')).status).toBe(200);
    const refused = await call('POST', `/v1/tenants/q/plugins/${NOTES}/call/get`, 'k');
    expect(refused).toMatchObject({
      status: 429,
      body: { ok: false, error: { code: 'quota_exceeded', details: { quota: 'calls_per_second' } } },
    });
    // One call per 1,000 s: the next is due in (0, 1000] s.
    const retry = Number(refused.headers['retry-after']);
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(1000);
    expect((await call('POST', `/v1/tenants/a/plugins/${NOTES}/call/get`, 'k')).status).toBe(200);
  });

  it('a tenant’s failed install names files inside its plugin, never the host’s paths; the admin sees them whole', async () => {
    // The sixth review: install_id_mismatch, manifest errors and wasm_invalid answered a tenant with the host's
    // data_dir, the tenant's generation and the staging directory's pid and start time.
    const archive = await tarDir(join(REPO, 'examples/plugins/notes-c'));
    const headers = { 'Content-Type': 'application/x-tar', 'x-as': 'a' };
    const refused = await call('PUT', '/v1/tenants/a/plugins/other.id', archive, headers);
    expect(refused).toMatchObject({
      status: 400,
      body: { error: { code: 'install_id_mismatch', file: 'plugin.toml' } },
    });
    expect(JSON.stringify(refused.body)).not.toContain(fixture.dir);
    const asAdmin = await call('PUT', '/v1/tenants/a/plugins/other.id', archive, {
      'Content-Type': 'application/x-tar',
    });
    expect((asAdmin.body.error as { file?: string } | undefined)?.file).toMatch(
      /^\/.*\/plugins\/staging\/.*\/plugin\.toml$/,
    );
  });

  it('tenant admin: PUT creates a tenant, a plugin is installed into it, GET and DELETE', async () => {
    const json = { 'Content-Type': 'application/json' };
    const created = await call(
      'PUT',
      '/v1/admin/tenants/c',
      JSON.stringify({ quotas: { max_plugins: 1 } }),
      json,
    );
    expect(created).toMatchObject({
      status: 200,
      body: { tenant: { id: 'c', origin: 'runtime', plugins: 0, spec: { quotas: { max_plugins: 1 } } } },
    });
    expect((await call('GET', '/v1/admin/tenants')).body.tenants).toContainEqual(
      expect.objectContaining({ id: 'c' }),
    );
    const archive = await tarDir(join(REPO, 'examples/plugins/notes-c'));
    const tar = { 'Content-Type': 'application/x-tar' };
    expect(await call('PUT', `/v1/tenants/c/plugins/${NOTES}`, archive, tar)).toMatchObject({
      status: 200,
      body: { plugin: { id: NOTES, state: 'ready' } },
    });
    expect((await call('POST', `/v1/tenants/c/plugins/${NOTES}/call/put`, 'k=c')).status).toBe(200);
    expect((await call('GET', '/v1/admin/tenants/c')).body.tenant).toMatchObject({ plugins: 1 });
    expect((await call('POST', `/v1/tenants/c/plugins/${NOTES}/reload`)).status).toBe(200);
    // Its one plugin is its quota.
    expect(await call('PUT', '/v1/tenants/c/plugins/other.id', archive, tar)).toMatchObject({
      status: 429,
      body: { error: { code: 'quota_exceeded' } },
    });
    expect(await call('DELETE', `/v1/tenants/c/plugins/${NOTES}`)).toMatchObject({
      status: 200,
      body: { removed: [NOTES] },
    });
    // Bad specs and ids: 400, and a body that is not JSON.
    expect(await call('PUT', '/v1/admin/tenants/c', JSON.stringify({ quota: {} }), json)).toMatchObject({
      status: 400,
      body: { error: { code: 'api_bad_request' } },
    });
    expect(await call('PUT', '/v1/admin/tenants/c', '{', json)).toMatchObject({
      status: 400,
      body: { error: { code: 'api_bad_request' } },
    });
    expect(await call('PUT', '/v1/admin/tenants/Not_Valid', '{}', json)).toMatchObject({
      status: 400,
      body: { error: { code: 'tenant_invalid' } },
    });
    expect(await call('PUT', '/v1/admin/tenants/a', '{}', json)).toMatchObject({
      status: 409,
      body: { error: { code: 'tenant_exists' } },
    });
    expect(await call('DELETE', '/v1/admin/tenants/c')).toMatchObject({
      status: 200,
      body: { ok: true, removed: 'c' },
    });
    expect(await call('GET', '/v1/tenants/c/plugins')).toMatchObject({ status: 404 });
    expect(await call('GET', '/v1/admin/tenants/c')).toMatchObject({ status: 404 });

    // Its data is kept aside, listed, and not the next tenant c's (before: its installed plugin and storage were).
    const kept = await call('GET', '/v1/admin/removed-tenants');
    expect(kept).toMatchObject({ status: 200, body: { removed: [{ tenant: 'c' }] } });
    const generation = (kept.body.removed as { generation: string }[])[0]?.generation;
    expect(generation).toMatch(/^[0-9a-f]{16}$/);
    expect((await call('PUT', '/v1/admin/tenants/c', '{}', json)).body.tenant).toMatchObject({ plugins: 0 });
    expect(await call('PUT', `/v1/tenants/c/plugins/${NOTES}`, archive, tar)).toMatchObject({ status: 200 });
    expect(await call('POST', `/v1/tenants/c/plugins/${NOTES}/call/get`, 'k')).toMatchObject({
      status: 422,
    });
    expect(await call('DELETE', '/v1/admin/removed-tenants/c')).toMatchObject({
      status: 200,
      body: { ok: true, purged: [{ tenant: 'c', generation }] },
    });
    expect(await call('GET', '/v1/admin/removed-tenants')).toMatchObject({
      status: 200,
      body: { removed: [] },
    });
    expect(await call('DELETE', '/v1/admin/removed-tenants/c')).toMatchObject({
      status: 404,
      body: { error: { code: 'tenant_not_found' } },
    });
    expect((await call('GET', '/v1/admin/tenants/c')).body.tenant).toMatchObject({ plugins: 1 });
    expect(await call('DELETE', '/v1/admin/tenants/c?purge=true')).toMatchObject({ status: 200 });
  });

  it('another method on a tenant route: 405 with Allow', async () => {
    const answer = await send(socket, 'PATCH', `/v1/tenants/a/plugins/${NOTES}`);
    expect(answer).toMatchObject({ status: 405, body: { error: { code: 'api_method_not_allowed' } } });
    expect(answer.headers.allow).toBe('GET, PUT, DELETE');
    expect((await api(socket, 'GET', '/v1/health')).status).toBe(200);
  });

  it('a method fastify does not route by default (WebDAV PROPFIND, MKCOL): 405 with Allow on a route, 404 elsewhere', async () => {
    for (const method of ['PROPFIND', 'MKCOL']) {
      const answer = await send(socket, method, `/v1/tenants/a/plugins/${NOTES}`);
      expect(answer, method).toMatchObject({
        status: 405,
        body: { error: { code: 'api_method_not_allowed' } },
      });
      expect(answer.headers.allow).toBe('GET, PUT, DELETE');
    }
    expect(await send(socket, 'PROPFIND', '/v1/nowhere')).toMatchObject({
      status: 404,
      body: { error: { code: 'api_not_found' } },
    });
  });
});

describe('reed-plugins serve: every tenant of reed.toml behind the one socket (the built CLI, mode none)', () => {
  it('serves the default tenant on /v1/plugins and tenant a on /v1/tenants/a', async () => {
    const dir = lastingDir('reed-serve-tenants-cli-');
    const examples = join(REPO, 'examples/plugins');
    writeFileSync(
      join(dir, 'reed.toml'),
      `runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n[tenants.a]\nplugin_dirs = [${JSON.stringify(examples)}]\n`,
    );
    const server = await startServe(dir, [
      '--plugin-dir',
      examples,
      '--plugin',
      'example.hello',
      '--mode',
      'none',
    ]);
    try {
      const greet = (prefix: string) =>
        api(server.socket, 'POST', `${prefix}/plugins/example.hello/call/greet`, 'A');
      expect((await greet('/v1')).body.output).toBe('Hello, A!');
      expect((await greet('/v1/tenants/a')).body.output).toBe('Hello, A!');
      expect((await greet('/v1/tenants/default')).body.output).toBe('Hello, A!');
      expect(await greet('/v1/tenants/b')).toMatchObject({
        status: 404,
        body: { error: { code: 'tenant_not_found' } },
      });
      const tenants = await api(server.socket, 'GET', '/v1/admin/tenants');
      expect(
        (tenants.body as unknown as { tenants: { id: string; origin: string }[] }).tenants.map((t) => [
          t.id,
          t.origin,
        ]),
      ).toEqual([
        ['default', 'default'],
        ['a', 'config'],
      ]);
    } finally {
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });
});
