import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ReedError } from '../errors.js';
import type { CallWasi } from '../runtime/call-wasi.js';
import type { Tenant, TenantDirectory } from '../tenants/tenant.js';
import { send, sendJson } from './answers.js';
import { type CallBodies, callAnswer } from './call-route.js';
import { bounded, discardRest } from './request-body.js';
import { paramsSchema, type RouteDef, type RouteScope, tenantOf } from './route-def.js';
import {
  CallBody,
  CallQuery,
  errors,
  NoQuery,
  PluginBody,
  PluginListBody,
  RemovedBody,
  RemoveQuery,
} from './schemas.js';

/**
 * A tenant's plugin routes (docs/API.md): under /v1 for the default tenant (its install, upgrade, removal and reload
 * under /v1/admin/plugins, the admin's), under /v1/tenants/{tenant} for any: the list, one plugin's status, a call,
 * and the lifecycle.
 */
export function pluginRoutes(
  directory: TenantDirectory,
  options: { maxInputBytes: number; maxInstallBytes: number },
  bodies: CallBodies,
): RouteDef[] {
  const routes: RouteDef[] = [];
  const add = (def: RouteDef) => routes.push(def);

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
      handler: async (request, reply) =>
        send(reply, 200, { ok: true, plugins: tenantOf(directory, request).status() }),
    });
    add({
      method: 'GET',
      url: `${prefix}/plugins/:id`,
      scope: 'tenant',
      summary: `One plugin of ${of}: its status`,
      schema: { params: p(['id']), querystring: NoQuery, response: { 200: PluginBody, ...errors(400, 404) } },
      handler: async (request, reply) => {
        const { id } = request.params as { id: string };
        return send(reply, 200, { ok: true, plugin: tenantOf(directory, request).host.pluginStatus(id) });
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
      // Not async: the body is read with listeners and the answer written when the call ends, with no promise of
      // the route's own (the API bench: every request takes this path).
      handler: (request, reply) => {
        call(directory, bodies, options.maxInputBytes, request, reply);
        return undefined;
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
        const tenant = tenantOf(directory, request);
        const { id } = request.params as { id: string };
        const plugin = await install(tenant, id, request.raw, options.maxInstallBytes);
        return send(reply, 200, { ok: true, plugin });
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
        const tenant = tenantOf(directory, request);
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
        return send(reply, 200, { ok: true, plugin: await tenantOf(directory, request).reload(id) });
      },
    });
  }
  return routes;
}

/**
 * `POST .../plugins/{id}/call/{fn}`: the body (at most maxInputBytes) as the input, the output as the answer. A
 * failure goes to `reply.send(error)`, so to the API's error handler, as an async route's throw would.
 */
function call(
  directory: TenantDirectory,
  bodies: CallBodies,
  maxInputBytes: number,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const tenant = tenantOf(directory, request);
  const { id, fn } = request.params as { id: string; fn: string };
  const wasi = callWasiFrom(request.query as { arg?: string[]; env?: string[] });
  const refusal = bodies.refusal(tenant, id);
  if (refusal !== undefined) throw refusal;
  bodies.read(tenant, request.raw, maxInputBytes, (error, input) => {
    if (error !== undefined) {
      reply.send(error);
      return undefined;
    }
    const callOptions: Parameters<Tenant['call']>[3] = {};
    if (wasi !== undefined) callOptions.wasi = wasi;
    // A W3C traceparent header: the call's span continues the caller's trace (a malformed one is refused).
    const traceParent = request.headers.traceparent;
    if (traceParent !== undefined) callOptions.traceParent = String(traceParent);
    let outcome: ReturnType<Tenant['call']>;
    try {
      outcome = tenant.call(id, fn, input, callOptions);
    } catch (thrown) {
      reply.send(thrown);
      return undefined;
    }
    // The body stays counted until this settles (CallBodies).
    return outcome.then(
      (done) => void sendJson(reply, 200, callAnswer(done.output, done.stats)),
      (failure: unknown) => void reply.send(failure),
    );
  });
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
