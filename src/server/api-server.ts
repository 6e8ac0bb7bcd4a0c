import { once } from 'node:events';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest, type RouteOptions } from 'fastify';
import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import type { PluginHost } from '../host/plugin-host.js';
import { singleTenantDirectory } from '../tenants/single.js';
import { DEFAULT_TENANT, type TenantDirectory } from '../tenants/tenant.js';
import { fail, MAX_HEADER_BYTES, onClientError } from './answers.js';
import { type Authenticator, registerAuth } from './auth.js';
import { callFastPath } from './call-fast-path.js';
import { CallBodies } from './call-route.js';
import { guardConnections, requestBegan, serverTimeouts } from './connection-guard.js';
import { type Principal, SOCKET_PEER } from './principal.js';
import { type RouteScope, registerRoutes } from './routes.js';
import { ErrorBody, PluginStatusSchema, TenantQuotasSchema } from './schemas.js';

/**
 * The orchestrator's own API (`reed-plugins serve`): HTTP/1.1 over a Unix socket, on fastify with TypeBox schemas,
 * so that a CMS, or the tests under docker-compose, can drive plugin hosts running elsewhere. Every route is in
 * routes.ts and docs/API.md; the OpenAPI document is served at `GET /v1/openapi.json`.
 *
 * Every failure is `{"ok":false,"error":{"code","message","pluginId"?,"details"?}}` with a stable code (docs/CODES.md).
 */
export interface ApiServerOptions {
  /** Largest request body accepted; a larger one gets 413 `request_too_large` and is discarded, not stored. */
  maxInputBytes: number;
  /** Largest plugin archive accepted by `PUT /v1/admin/plugins/{id}`. Default 256 MiB. */
  maxInstallBytes?: number;
  /**
   * Who sent the request, from its headers and connection (src/server/auth.ts: bearer tokens, TLS client
   * certificates). Throwing a ReedError (`unauthenticated`) refuses it. Default: every request is the socket's peer,
   * which is admin (whoever can open a Unix socket of mode 0600 has the host's own rights).
   */
  authenticate?: (request: FastifyRequest) => Principal | Promise<Principal>;
  /**
   * Bearer tokens (src/server/auth.ts, docs/API.md "Authentication"): the principal from `auth.authenticateRequest`
   * (unless `authenticate` is given), the token routes, `WWW-Authenticate` on 401 and the `reed:audit` events.
   */
  auth?: Authenticator;
  /**
   * Serves `GET /metrics` (Prometheus text format, src/server/metrics.ts), an admin route like the lifecycle ones.
   * Default: no such route.
   */
  metrics?: { text(): Promise<string>; readonly contentType: string };
}

export interface TenantApiServerOptions extends ApiServerOptions {
  /** Where a request that fails with something other than a ReedError is logged (with its cause). */
  logger: Pick<Logger, 'error'>;
}

export const DEFAULT_MAX_INPUT_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_INSTALL_BYTES = 256 * 1024 * 1024;
export { MAX_HEADER_BYTES, send } from './answers.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who sent it: set by the onRequest hook (ApiServerOptions.authenticate) before any route runs. */
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Who may use the route (the onRequest hook checks it). */
    scope?: RouteScope;
    /**
     * A plugin's install, upgrade, removal or reload: within the default tenant the admin's only (as its
     * /v1/admin/plugins/... routes are), whichever path reaches it.
     */
    lifecycle?: boolean;
  }
}

/** What in a request target the WHATWG URL parser would change (anything else it passes through as it is). */
const NEEDS_URL_PARSER = /[^!-~]|[%\\#"'<>`{}^|]|\/\.|\/\//;

/** The fastify instance behind each server createApiServer made: listenOnSocket readies it before listening. */
const apps = new WeakMap<Server, FastifyInstance>();

/** The API over one host (the default tenant's routes, and the tenant routes for `default`). */
export function createApiServer(host: PluginHost, options: ApiServerOptions): Server {
  return createTenantApiServer(singleTenantDirectory(host), { ...options, logger: host.logger });
}

/** The API over a directory of tenants: `/v1/plugins/...` is the default tenant's, `/v1/tenants/{tenant}/...` any. */
export function createTenantApiServer(directory: TenantDirectory, options: TenantApiServerOptions): Server {
  const app = buildApi(directory, options);
  apps.set(app.server, app);
  return app.server;
}

/** How long a client may take to send a whole request. */
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * Connections the API's server holds at once; one more is closed as it is accepted. Each is a descriptor of the
 * host's, which its runners, sockets and files need too; tenants' clients may share the socket.
 */
export const MAX_API_CONNECTIONS = 4_096;

/** The fastify instance (not yet ready: `await app.ready()`, or listenOnSocket on its `server`). */
export function buildApi(directory: TenantDirectory, options: TenantApiServerOptions): FastifyInstance {
  const bodies = new CallBodies();
  let fast: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => {
      // A plain call is answered by the fast path once the app is ready (call-fast-path.ts), anything else by fastify.
      // requestTimeout bounds how long a client may take to send a request (and so how long a refused body is
      // drained); connection-guard.ts bounds the rest of what a slow or silent client may hold.
      const server = createServer(
        { maxHeaderSize: MAX_HEADER_BYTES, ...serverTimeouts(REQUEST_TIMEOUT_MS) },
        (req, res) => {
          requestBegan(req.socket);
          if (fast === undefined || !fast(req, res)) handler(req, res);
        },
      );
      guardConnections(server, MAX_API_CONNECTIONS, 'caller');
      return server;
    },
    // Node's default: an idle kept-alive connection is closed after 5 s.
    keepAliveTimeout: 5_000,
    requestTimeout: REQUEST_TIMEOUT_MS,
    exposeHeadRoutes: false,
    routerOptions: {
      // A plugin id, a function name and a percent-encoded tenant may be long; the header bound holds them all.
      maxParamLength: MAX_HEADER_BYTES,
      querystringParser: parseQuery,
    },
    // The path as the WHATWG URL parser reads it (dot segments resolved, as before fastify): `%2e%2e` is `..`.
    rewriteUrl: (req) => {
      const raw = req.url ?? '/';
      // Only a path with something the parser changes goes through it: percent-escapes, dot segments, empty
      // segments, backslashes, a fragment, or no leading slash.
      if (raw.startsWith('/') && !NEEDS_URL_PARSER.test(raw)) return raw;
      const url = new URL(raw, 'http://reed');
      return url.pathname + url.search;
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    clientErrorHandler: onClientError,
    frameworkErrors: (error, request, reply) => {
      const reed =
        error.code === 'FST_ERR_BAD_URL'
          ? new ReedError(
              'api_not_found',
              `the path ${request.url.slice(0, 256)} is not valid percent-encoding`,
            )
          : error;
      fail(options.logger, reed, request, reply);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are read by the routes themselves, as streams, within their own bounds (a call's input, an archive):
  // no parser of fastify's reads one, whatever its Content-Type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  // Answers are written by `send` (jsonText: nothing a plugin put in one can break its JSON); the response schemas
  // are the document's, not a serializer.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  app.decorateRequest('principal', undefined as unknown as Principal);
  // The one place where who sent a request is found and judged, before any route runs. A hook that calls `done`
  // (not an async one): the request goes on in the same tick, with no promise made for it.
  const authenticate = options.authenticate ?? options.auth?.authenticateRequest;
  if (options.auth !== undefined) registerAuth(app as unknown as FastifyInstance, options.auth, directory);
  if (authenticate === undefined)
    app.addHook('onRequest', (request, _reply, done) => {
      request.principal = SOCKET_PEER;
      done();
    });
  else
    app.addHook('onRequest', (request, _reply, done) => {
      let refused: Error | undefined;
      try {
        const principal = authenticate(request);
        if (principal instanceof Promise) {
          principal.then((p) => done(admit(request, p)), done);
          return;
        }
        refused = admit(request, principal);
      } catch (error) {
        refused = error as Error;
      }
      // Outside the try: `done` runs the rest of the request, whose errors are not this hook's.
      done(refused);
    });

  app.setErrorHandler((error, request, reply) => fail(options.logger, error, request, reply));
  app.setNotFoundHandler((request) => {
    throw new ReedError('api_not_found', `no API route ${request.url.split('?')[0]?.slice(0, 256)}`);
  });

  app.addSchema(ErrorBody);
  app.addSchema(PluginStatusSchema);
  app.addSchema(TenantQuotasSchema);
  void app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'reed-plugins serve',
        description:
          'The plugin orchestrator API (docs/API.md). Every failure is an Error with a stable code.',
        version: '1',
      },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  void app.register(async (api) => registerRoutes(api, directory, options, bodies));
  // The call routes' fast path, when nothing but the API's own onRequest hook would run for a call (a hook added
  // to the app, or a custom `authenticate`, keeps every call in fastify); off once the app closes, as fastify's
  // routes answer 503 then.
  const callRoutes: RouteOptions[] = [];
  app.addHook('onRoute', (route) => {
    if (route.method === 'POST' && /\/call\/:fn$/.test(route.url ?? '')) callRoutes.push(route);
  });
  app.addHook('onReady', (done) => {
    if (options.authenticate === undefined && onlyOwnHooks(app, callRoutes, options.auth !== undefined))
      fast = callFastPath({
        directory,
        auth: options.auth,
        bodies,
        maxInputBytes: options.maxInputBytes,
        logger: options.logger,
      });
    done();
  });
  app.addHook('preClose', (done) => {
    fast = undefined;
    done();
  });
  const metrics = options.metrics;
  if (metrics !== undefined)
    app.get('/metrics', { config: { scope: 'admin' }, schema: { hide: true } }, async (_request, reply) => {
      const text = await metrics.text();
      return reply.code(200).header('Content-Type', metrics.contentType).send(text);
    });
  return app;
}

/** The principal set on the request, and judged against its route (the error that refuses it, if any). */
function admit(request: FastifyRequest, principal: Principal): Error | undefined {
  request.principal = principal;
  try {
    authorize(request);
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

/** The hooks a route context can run for a request (fastify's lifecycle), other than onRequest and onError. */
const REQUEST_HOOKS = [
  'preParsing',
  'preValidation',
  'preHandler',
  'preSerialization',
  'onSend',
  'onResponse',
  'onTimeout',
  'onRequestAbort',
] as const;

/**
 * Whether a call runs no hook but the API's own: the root's onRequest (authentication) and, with tokens, the
 * audit's onError (a call's failure after its admission is never a denial), none on the call routes themselves.
 * Read from fastify's own hook lists; where they are not found (another fastify), no.
 */
function onlyOwnHooks(app: FastifyInstance, callRoutes: RouteOptions[], audit: boolean): boolean {
  const key = Object.getOwnPropertySymbols(app).find((s) => s.description === 'fastify.hooks');
  const hooks = key === undefined ? undefined : (app as unknown as Record<symbol, unknown>)[key];
  if (typeof hooks !== 'object' || hooks === null) return false;
  const list = (name: string) => (hooks as Record<string, unknown>)[name];
  const count = (name: string) => {
    const l = list(name);
    return Array.isArray(l) ? l.length : Number.NaN;
  };
  if (count('onRequest') !== 1 || count('onError') !== (audit ? 1 : 0)) return false;
  if (REQUEST_HOOKS.some((name) => count(name) !== 0)) return false;
  const routeHooks = [...REQUEST_HOOKS, 'onRequest', 'onError'] as const;
  return (
    callRoutes.length === 2 &&
    callRoutes.every((route) =>
      routeHooks.every((name) => {
        const h = (route as unknown as Record<string, unknown>)[name];
        return h === undefined || (Array.isArray(h) && h.length === 0);
      }),
    )
  );
}

/**
 * The route's scope against the principal: `admin` routes need an admin (else 403 `forbidden`); a `tenant` route
 * of another tenant than the principal's answers as an unknown tenant would (404 `tenant_not_found`: whether it
 * exists is not told).
 */
function authorize(request: FastifyRequest): void {
  const scope = request.routeOptions.config.scope ?? 'public';
  const principal = request.principal;
  if (scope === 'public' || principal.admin) return;
  if (scope === 'admin')
    throw new ReedError('forbidden', `${request.method} ${request.routeOptions.url}: admin only`);
  const tenant = (request.params as { tenant?: string }).tenant ?? DEFAULT_TENANT;
  if (principal.tenant !== tenant)
    throw new ReedError('tenant_not_found', `no tenant "${tenant.slice(0, 64)}"`);
  // The default tenant's plugins are the operator's: a default-tenant token calls and reads them, but installs,
  // upgrades, removes and reloads nothing there (PUT /v1/tenants/default/plugins/x is /v1/admin/plugins/x).
  if (tenant === DEFAULT_TENANT && request.routeOptions.config.lifecycle === true)
    throw new ReedError(
      'forbidden',
      `${request.method} ${request.routeOptions.url}: the default tenant's plugins are installed, removed and reloaded by the admin only`,
    );
}

/** The query as URLSearchParams reads it (as before fastify), every name's values in an array, no prototype. */
function parseQuery(text: string): Record<string, string[]> {
  const query: Record<string, string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    const values = query[name];
    if (values === undefined) query[name] = [value];
    else values.push(value);
  }
  return query;
}

/**
 * Listens on `socketPath` with mode 0600 (only this user may drive the host). A socket file left by a dead
 * server is replaced; one a live server answers on, or any other file, is an error (`api_socket_in_use`).
 */
export async function listenOnSocket(server: Server, socketPath: string, mode = 0o600): Promise<void> {
  await apps.get(server)?.ready();
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(socketPath);
  } catch {
    // nothing there
  }
  if (existing !== undefined) {
    if (!existing.isSocket())
      throw new ReedError('api_socket_in_use', `${socketPath} exists and is not a socket; not replacing it`);
    if (await answers(socketPath))
      throw new ReedError('api_socket_in_use', `another server is already listening on ${socketPath}`);
    unlinkSync(socketPath);
  }
  const umask = process.umask(0o177); // no window in which the socket is open to others
  try {
    server.listen(socketPath);
    await once(server, 'listening');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new ReedError(
      'api_socket_failed',
      `cannot listen on ${socketPath}: ${e.code ?? e.message} (does its directory exist, and may this user write to it?)`,
      { cause: error },
    );
  } finally {
    process.umask(umask);
  }
  chmodSync(socketPath, mode);
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
