import { METHODS as httpMethods } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  HTTPMethods,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { ReedError } from '../errors.js';
import type { TenantDirectory } from '../tenants/tenant.js';
import { send } from './answers.js';
import { type ApiServerOptions, DEFAULT_MAX_INSTALL_BYTES } from './api-server.js';
import type { CallBodies } from './call-route.js';
import { pluginRoutes } from './plugin-routes.js';
import type { RouteDef, RouteScope } from './route-def.js';
import { errors, HealthBody } from './schemas.js';
import { tenantRoutes } from './tenant-routes.js';

export type { RouteScope } from './route-def.js';

type Api = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** A tenant's spec in `PUT /v1/admin/tenants/{tenant}`: small JSON. */
const MAX_SPEC_BYTES = 64 * 1024;

/**
 * Every route of the serve API (docs/API.md), registered: the public ones here, a tenant's plugin routes
 * (plugin-routes.ts), the tenant routes (tenant-routes.ts); auth.ts adds the token routes. The routes of before
 * tenants (`/v1/plugins/...`, `/v1/admin/plugins/...`) are the default tenant's; `/v1/tenants/{tenant}/...` the same
 * for any tenant, and `/v1/admin/tenants/...` manages tenants. Another method on a route's path is 405
 * `api_method_not_allowed` with an Allow header; an unknown tenant, or a plugin the tenant does not hold, 404.
 */
export function registerRoutes(
  api: Api,
  directory: TenantDirectory,
  options: ApiServerOptions,
  bodies: CallBodies,
): void {
  let document: string | undefined;
  const routes: RouteDef[] = [
    {
      method: 'GET',
      url: '/v1/health',
      scope: 'public',
      summary: 'The server answers',
      schema: { response: { 200: HealthBody } },
      handler: async (_request, reply) => send(reply, 200, { ok: true }),
    },
    {
      method: 'GET',
      url: '/v1/openapi.json',
      scope: 'public',
      summary: 'This API as an OpenAPI 3 document',
      schema: { response: { 200: Type.Object({}, { additionalProperties: true }) } },
      handler: async (_request, reply) => {
        document ??= JSON.stringify(api.swagger());
        return reply.code(200).header('Content-Type', 'application/json').send(document);
      },
    },
    ...pluginRoutes(
      directory,
      {
        maxInputBytes: options.maxInputBytes,
        maxInstallBytes: options.maxInstallBytes ?? DEFAULT_MAX_INSTALL_BYTES,
      },
      bodies,
    ),
    ...tenantRoutes(directory),
  ];

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
  // The methods fastify 5 does not route unless told (WebDAV's PROPFIND, MKCOL, ...; CONNECT never reaches a route):
  // made known here so that on a route's path they answer 405 with Allow, as before fastify, not 404.
  const known = new Set<string>(api.supportedMethods);
  for (const m of httpMethods)
    if (m !== 'CONNECT' && !known.has(m)) {
      api.addHttpMethod(m);
      known.add(m);
    }
  const every = [...known] as HTTPMethods[];
  for (const [url, { methods, scope }] of allowed) {
    const others = every.filter((m) => !methods.includes(m));
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
