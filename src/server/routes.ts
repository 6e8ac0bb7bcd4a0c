import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { type TSchema, Type } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HTTPMethods,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { ReedError } from '../errors.js';
import type { CallWasi } from '../runtime/call-wasi.js';
import { quotaExceeded } from '../tenants/quota.js';
import { DEFAULT_TENANT, type Tenant, type TenantDirectory } from '../tenants/tenant.js';
import { type ApiServerOptions, DEFAULT_MAX_INSTALL_BYTES, send } from './api-server.js';
import {
  CallBody,
  CallQuery,
  errors,
  HealthBody,
  NoQuery,
  PluginBody,
  PluginListBody,
  RemovedBody,
  RemoveQuery,
  TenantBody,
  TenantListBody,
  TenantSpecSchema,
  UsageBody,
} from './schemas.js';

/** Who may use a route: anyone who reached the server, a tenant's principal (or an admin), an admin only. */
export type RouteScope = 'public' | 'tenant' | 'admin';

type Api = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

const METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
/** A tenant's spec in `PUT /v1/admin/tenants/{tenant}`: small JSON. */
const MAX_SPEC_BYTES = 64 * 1024;

interface RouteDef {
  method: HTTPMethods;
  url: string;
  scope: RouteScope;
  summary: string;
  schema: { params?: TSchema; querystring?: TSchema; body?: TSchema; response: Record<number, TSchema> };
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  /** The route reads a JSON body (the tenant admin routes); others read their bodies as streams. */
  json?: boolean;
  /** A plugin's install, upgrade, removal or reload (the admin's only within the default tenant). */
  lifecycle?: boolean;
}

/**
 * Every route of the serve API (docs/API.md). The routes of before tenants (`/v1/plugins/...`,
 * `/v1/admin/plugins/...`) are the default tenant's; `/v1/tenants/{tenant}/...` the same for any tenant, and
 * `/v1/admin/tenants/...` manages tenants. Another method on a route's path is 405 `api_method_not_allowed` with an
 * Allow header; an unknown tenant, or a plugin the tenant does not hold, 404.
 */
export function registerRoutes(api: Api, directory: TenantDirectory, options: ApiServerOptions): void {
  const maxInstall = options.maxInstallBytes ?? DEFAULT_MAX_INSTALL_BYTES;
  const tenantOf = (request: FastifyRequest): Tenant => {
    const id = (request.params as { tenant?: string }).tenant ?? DEFAULT_TENANT;
    const tenant = directory.get(id);
    if (tenant === undefined) throw new ReedError('tenant_not_found', `no tenant "${id.slice(0, 64)}"`);
    return tenant;
  };
  /** Call bodies being received now, by tenant (bounded by its max_concurrent_calls). */
  const readingBodies = new Map<string, number>();
  const routes: RouteDef[] = [];
  const add = (def: RouteDef) => routes.push(def);

  add({
    method: 'GET',
    url: '/v1/health',
    scope: 'public',
    summary: 'The server answers',
    schema: { response: { 200: HealthBody } },
    handler: async (_request, reply) => send(reply, 200, { ok: true }),
  });
  let document: string | undefined;
  add({
    method: 'GET',
    url: '/v1/openapi.json',
    scope: 'public',
    summary: 'This API as an OpenAPI 3 document',
    schema: { response: { 200: Type.Object({}, { additionalProperties: true }) } },
    handler: async (_request, reply) => {
      document ??= JSON.stringify(api.swagger());
      return reply.code(200).header('Content-Type', 'application/json').send(document);
    },
  });

  // A tenant's plugins: under /v1 for the default tenant, under /v1/tenants/{tenant} for any.
  for (const [prefix, params, admin] of [
    ['/v1', {}, '/v1/admin/plugins/:id'],
    ['/v1/tenants/:tenant', { tenant: true }, '/v1/tenants/:tenant/plugins/:id'],
  ] as const) {
    const tenantParam = 'tenant' in params;
    const of = tenantParam ? 'the tenant' : 'the default tenant';
    const p = (fields: string[]) => paramsSchema(tenantParam ? ['tenant', ...fields] : fields);
    add({
      method: 'GET',
      url: `${prefix}/plugins`,
      scope: 'tenant',
      summary: `The plugins of ${of} and their status`,
      schema: { params: p([]), response: { 200: PluginListBody, ...errors(404) } },
      handler: async (request, reply) => send(reply, 200, { ok: true, plugins: tenantOf(request).status() }),
    });
    add({
      method: 'GET',
      url: `${prefix}/plugins/:id`,
      scope: 'tenant',
      summary: `One plugin of ${of}: its status`,
      schema: { params: p(['id']), querystring: NoQuery, response: { 200: PluginBody, ...errors(400, 404) } },
      handler: async (request, reply) => {
        const { id } = request.params as { id: string };
        return send(reply, 200, { ok: true, plugin: tenantOf(request).host.pluginStatus(id) });
      },
    });
    add({
      method: 'POST',
      url: `${prefix}/plugins/:id/call/:fn`,
      scope: 'tenant',
      summary: `Calls a function of a plugin of ${of} with the body as its input`,
      schema: {
        params: p(['id', 'fn']),
        querystring: CallQuery,
        response: { 200: CallBody, ...errors(400, 404, 413, 422, 429, 503) },
      },
      handler: async (request, reply) => {
        const tenant = tenantOf(request);
        const { id, fn } = request.params as { id: string; fn: string };
        const wasi = callWasiFrom(request.query as { arg?: string[]; env?: string[] });
        // The tenant's max_concurrent_calls bounds the bodies being read too: each may hold maxInputBytes of the
        // host's memory before the call's own admission (Tenant.call) sees it.
        const max = tenant.spec.quotas?.max_concurrent_calls;
        const reading = readingBodies.get(tenant.id) ?? 0;
        if (max !== undefined && reading >= max)
          throw quotaExceeded(
            tenant.id,
            'max_concurrent_calls',
            max,
            `${reading} call bodies are being received`,
            null,
            id,
          );
        readingBodies.set(tenant.id, reading + 1);
        let input: Uint8Array;
        try {
          input = await readBody(request.raw, options.maxInputBytes);
        } finally {
          const left = (readingBodies.get(tenant.id) ?? 1) - 1;
          if (left > 0) readingBodies.set(tenant.id, left);
          else readingBodies.delete(tenant.id);
        }
        // A W3C traceparent header: the call's span continues the caller's trace (a malformed one is refused).
        const traceParent = request.headers.traceparent;
        const callOptions = {
          ...(wasi === undefined ? {} : { wasi }),
          ...(traceParent === undefined ? {} : { traceParent: String(traceParent) }),
        };
        const outcome = await tenant.call(id, fn, input, callOptions);
        return send(reply, 200, { ok: true, ...encodeOutput(outcome.output), stats: outcome.stats });
      },
    });
    // Install, upgrade, remove, reload: the admin's for the default tenant (as before tenants), the tenant's own
    // within a tenant (its max_plugins quota bounds what it installs).
    const scope: RouteScope = tenantParam ? 'tenant' : 'admin';
    add({
      method: 'PUT',
      url: admin,
      scope,
      lifecycle: true,
      summary: `Installs or upgrades a plugin of ${of} from a tar of its directory`,
      schema: {
        params: p(['id']),
        querystring: NoQuery,
        response: { 200: PluginBody, ...errors(400, 404, 409, 413, 415, 422, 429) },
      },
      handler: async (request, reply) => {
        const tenant = tenantOf(request);
        const { id } = request.params as { id: string };
        return send(reply, 200, { ok: true, plugin: await install(tenant, id, request.raw, maxInstall) });
      },
    });
    add({
      method: 'DELETE',
      url: admin,
      scope,
      lifecycle: true,
      summary: `Removes a plugin of ${of} (after its calls in flight)`,
      schema: {
        params: p(['id']),
        querystring: RemoveQuery,
        response: { 200: RemovedBody, ...errors(400, 404, 409) },
      },
      handler: async (request, reply) => {
        const tenant = tenantOf(request);
        const { id } = request.params as { id: string };
        const withDependants = (request.query as { dependants?: string[] }).dependants?.at(-1) === 'true';
        return send(reply, 200, { ok: true, removed: await tenant.remove(id, { withDependants }) });
      },
    });
    add({
      method: 'POST',
      url: `${admin}/reload`,
      scope,
      lifecycle: true,
      summary: `Reloads a plugin of ${of} from its directory (the upgrade path)`,
      schema: {
        params: p(['id']),
        querystring: NoQuery,
        response: { 200: PluginBody, ...errors(400, 404, 422) },
      },
      handler: async (request, reply) => {
        const { id } = request.params as { id: string };
        return send(reply, 200, { ok: true, plugin: await tenantOf(request).reload(id) });
      },
    });
  }
  add({
    method: 'GET',
    url: '/v1/tenants/:tenant/usage',
    scope: 'tenant',
    summary: 'What the tenant and each of its plugins used, its quotas and its denials',
    schema: {
      params: paramsSchema(['tenant']),
      querystring: NoQuery,
      response: { 200: UsageBody, ...errors(404) },
    },
    handler: async (request, reply) => {
      const tenant = tenantOf(request);
      return send(reply, 200, { ok: true, usage: directory.usage(tenant.id) });
    },
  });

  // Tenants.
  const info = (tenant: Tenant) => ({
    id: tenant.id,
    origin: tenant.origin,
    spec: tenant.spec,
    plugins: tenant.status().length,
  });
  add({
    method: 'GET',
    url: '/v1/admin/tenants',
    scope: 'admin',
    summary: 'Every tenant',
    schema: { querystring: NoQuery, response: { 200: TenantListBody, ...errors(403) } },
    handler: async (_request, reply) => send(reply, 200, { ok: true, tenants: directory.list().map(info) }),
  });
  add({
    method: 'GET',
    url: '/v1/admin/tenants/:tenant',
    scope: 'admin',
    summary: 'One tenant: its origin, spec and number of plugins',
    schema: {
      params: paramsSchema(['tenant']),
      querystring: NoQuery,
      response: { 200: TenantBody, ...errors(403, 404) },
    },
    handler: async (request, reply) => send(reply, 200, { ok: true, tenant: info(tenantOf(request)) }),
  });
  add({
    method: 'PUT',
    url: '/v1/admin/tenants/:tenant',
    scope: 'admin',
    summary: 'Creates a tenant, or changes the plugin_dirs and quotas of one created here',
    json: true,
    schema: {
      params: paramsSchema(['tenant']),
      querystring: NoQuery,
      body: TenantSpecSchema,
      response: { 200: TenantBody, ...errors(400, 403, 409, 413, 415) },
    },
    handler: async (request, reply) => {
      const { tenant } = request.params as { tenant: string };
      const created = await directory.create(
        tenant,
        request.body as Parameters<TenantDirectory['create']>[1],
      );
      return send(reply, 200, { ok: true, tenant: info(created) });
    },
  });
  add({
    method: 'DELETE',
    url: '/v1/admin/tenants/:tenant',
    scope: 'admin',
    summary: 'Removes a tenant created here (its plugins stop; ?purge=true deletes its data too)',
    schema: {
      params: paramsSchema(['tenant']),
      querystring: PurgeQuery,
      response: { 200: RemovedTenantBody, ...errors(400, 403, 404) },
    },
    handler: async (request, reply) => {
      const { tenant } = request.params as { tenant: string };
      const purge = (request.query as { purge?: string[] }).purge?.at(-1) === 'true';
      await directory.remove(tenant, { purge });
      return send(reply, 200, { ok: true, removed: tenant });
    },
  });

  // Register: the JSON routes in a context of their own (the only one with a JSON parser), the others here.
  const allowed = new Map<string, { methods: HTTPMethods[]; scope: RouteScope }>();
  const toFastify = (def: RouteDef) => ({
    method: def.method,
    url: def.url,
    config: { scope: def.scope, lifecycle: def.lifecycle === true },
    schema: {
      summary: def.summary,
      ...def.schema,
      // Who is refused, and how (the onRequest hook): no or a bad token (401); an admin route (403); a tenant
      // route of another tenant answers as an unknown one (404).
      response: {
        ...(def.scope === 'public' ? {} : errors(401)),
        ...(def.scope === 'admin' ? errors(403) : {}),
        ...(def.scope === 'tenant' ? errors(404) : {}),
        ...def.schema.response,
      },
    },
    handler: def.handler,
  });
  for (const def of routes) {
    const seen = allowed.get(def.url) ?? { methods: [], scope: def.scope };
    seen.methods.push(def.method);
    allowed.set(def.url, seen);
    if (def.json !== true) api.route(toFastify(def));
  }
  void api.register(async (json) => {
    json.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: MAX_SPEC_BYTES },
      (_request, text, done) => {
        try {
          done(null, JSON.parse(String(text)));
        } catch {
          done(new ReedError('api_bad_request', 'the body is not JSON'), undefined);
        }
      },
    );
    for (const def of routes) if (def.json === true) json.route(toFastify(def));
  });
  for (const [url, { methods, scope }] of allowed) {
    const others = METHODS.filter((m) => !methods.includes(m));
    const allow = methods.join(', ');
    api.route({
      method: others,
      url,
      config: { scope },
      schema: { hide: true } as Record<string, unknown>,
      handler: async (request, reply) => {
        reply.header('Allow', allow);
        throw new ReedError(
          'api_method_not_allowed',
          `${request.method} ${request.url.split('?')[0]?.slice(0, 256)}: only ${allow} is allowed`,
        );
      },
    });
  }
}

const PurgeQuery = Type.Object(
  { purge: Type.Optional(Type.Array(Type.Union([Type.Literal('true'), Type.Literal('false')]))) },
  { additionalProperties: false },
);
const RemovedTenantBody = Type.Object(
  { ok: Type.Literal(true), removed: Type.String() },
  { additionalProperties: false },
);

function paramsSchema(names: string[]): TSchema {
  return Type.Object(Object.fromEntries(names.map((n) => [n, Type.String()])));
}

/**
 * The call route's query: `arg` (repeatable) appended to a WASI command's arguments, `env` (repeatable, `NAME=VALUE`,
 * the first `=` splits) merged over its environment. The schema refused any other name and an `env` without `=`;
 * the host checks the rest (checkCallWasi).
 */
function callWasiFrom(query: { arg?: string[]; env?: string[] }): CallWasi | undefined {
  if (query.arg === undefined && query.env === undefined) return undefined;
  const env: Record<string, string> = {};
  for (const value of query.env ?? []) {
    const at = value.indexOf('=');
    if (at <= 0) throw new ReedError('api_bad_request', 'the query parameter env must be NAME=VALUE');
    Object.defineProperty(env, value.slice(0, at), {
      value: value.slice(at + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const args = query.arg ?? [];
  return { ...(args.length > 0 ? { args } : {}), ...(Object.keys(env).length > 0 ? { env } : {}) };
}

async function readBody(req: IncomingMessage, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const tooLarge = () =>
    new ReedError('request_too_large', `the request body is larger than the limit of ${max} bytes`);
  if (declared > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Output as text when it is UTF-8, else base64, saying which (as `reed-plugins call --json` prints it). */
export function encodeOutput(output: Uint8Array): { output: string; outputEncoding: 'utf8' | 'base64' } {
  try {
    return { output: utf8.decode(output), outputEncoding: 'utf8' };
  } catch {
    return { output: Buffer.from(output).toString('base64'), outputEncoding: 'base64' };
  }
}

/** `PUT .../plugins/{id}`: the body, a tar of the plugin directory, streamed into the tenant's install. */
async function install(tenant: Tenant, id: string, req: IncomingMessage, max: number) {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-tar' && type !== 'application/tar')
    throw new ReedError(
      'api_unsupported_media_type',
      `PUT ${req.url?.split('?')[0]?.slice(0, 256)} takes a tar of the plugin directory (Content-Type: application/x-tar), not "${String(type).slice(0, 64)}"`,
      { pluginId: id },
    );
  const body = bounded(req, max);
  try {
    return await tenant.install(id, body);
  } finally {
    req.unpipe(body);
    body.destroy();
    // A refused archive's rest is read and dropped before the answer (at most the limit): a client still writing
    // would otherwise meet a closed connection (EPIPE) instead of the answer that says why.
    await discardRest(req, max);
  }
}

function discardRest(req: IncomingMessage, max: number): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', done);
      req.off('close', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > max) done();
    };
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.resume();
  });
}

/** The request body as a stream that fails with `request_too_large` past `max` bytes (declared or sent). */
function bounded(req: IncomingMessage, max: number): Transform {
  const tooLarge = () =>
    new ReedError('request_too_large', `the plugin archive is larger than the limit of ${max} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > max) throw tooLarge();
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      if (size > max) done(tooLarge());
      else done(null, chunk);
    },
  });
  req.pipe(counter);
  // A client gone before the archive's end: the extraction sees an error, never waits for the rest.
  req.once('close', () => {
    if (!req.complete)
      counter.destroy(new Error('the client closed the connection before the archive ended'));
  });
  return counter;
}
