import { once } from 'node:events';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import type { PluginHost } from '../host/plugin-host.js';
import { jsonText } from '../safe-text.js';
import { singleTenantDirectory } from '../tenants/single.js';
import { DEFAULT_TENANT, type TenantDirectory } from '../tenants/tenant.js';
import { type Authenticator, registerAuth } from './auth.js';
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
/**
 * The request line and headers together (Node's default is 16 KiB): a call's WASI args and env travel in the query
 * and may hold 64 KiB of text (src/runtime/call-wasi.ts), three times that percent-encoded.
 */
export const MAX_HEADER_BYTES = 256 * 1024;

/** HTTP status by code; every other ReedError from a call is 422 (the call reached the host and failed). */
const STATUS: Partial<Record<Code, number>> = {
  api_not_found: 404,
  plugin_not_loaded: 404,
  function_not_found: 404,
  tenant_not_found: 404,
  api_method_not_allowed: 405,
  request_too_large: 413,
  api_bad_request: 400,
  trace_context_invalid: 400,
  tenant_invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  api_unsupported_media_type: 415,
  install_archive_invalid: 400,
  install_id_mismatch: 400,
  plugin_has_dependants: 409,
  dependant_version_mismatch: 409,
  tenant_exists: 409,
  quota_exceeded: 429,
  host_closed: 503,
  internal_error: 500,
};

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

/** The fastify instance (not yet ready: `await app.ready()`, or listenOnSocket on its `server`). */
export function buildApi(directory: TenantDirectory, options: TenantApiServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => {
      const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, handler);
      // Bounds how long a client may take to send a request (and so how long a refused body is drained).
      server.requestTimeout = 60_000;
      return server;
    },
    // Node's default: an idle kept-alive connection is closed after 5 s.
    keepAliveTimeout: 5_000,
    requestTimeout: 60_000,
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
  // The one place where who sent a request is found and judged, before any route runs.
  const authenticate = options.authenticate ?? options.auth?.authenticateRequest;
  if (options.auth !== undefined) registerAuth(app as unknown as FastifyInstance, options.auth, directory);
  if (authenticate === undefined)
    app.addHook('onRequest', (request, _reply, done) => {
      request.principal = SOCKET_PEER;
      done();
    });
  else
    app.addHook('onRequest', async (request) => {
      request.principal = await authenticate(request);
      authorize(request);
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
  void app.register(async (api) => registerRoutes(api, directory, options));
  const metrics = options.metrics;
  if (metrics !== undefined)
    app.get('/metrics', { config: { scope: 'admin' }, schema: { hide: true } }, async (_request, reply) => {
      const text = await metrics.text();
      return reply.code(200).header('Content-Type', metrics.contentType).send(text);
    });
  return app;
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

/**
 * A request Node's parser refused (bytes that are not HTTP, headers over MAX_HEADER_BYTES, too slow): as Node does,
 * an error answer when no answer is in flight on that connection, and the connection closed. An answer in flight
 * (the request before the bad bytes) is finished first, not cut or overtaken by the error's.
 */
function onClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (inFlight !== undefined && inFlight !== null) {
    if (!inFlight.writableFinished) {
      const close = () => socket.destroy();
      inFlight.once('finish', close);
      inFlight.once('close', close);
      return;
    }
    // Its answer is written, and may have said `Connection: close` (a GET whose stray body bytes were parsed as a
    // next request): nothing follows it on this connection, as Node's own handler does once headers are sent.
    // Found by test/fuzz/api-requests.test.ts: a 400 after a `Connection: close` answer.
    socket.end();
    return;
  }
  const [status, reed] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [
          431,
          new ReedError(
            'request_too_large',
            `the request line and headers are larger than ${MAX_HEADER_BYTES} bytes`,
          ),
        ]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, new ReedError('api_bad_request', 'the request was not received in time')]
        : [400, new ReedError('api_bad_request', 'the request is not valid HTTP/1.1')];
  const body = JSON.stringify({ ok: false, error: reed.toJSON() });
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  socket.destroy();
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

/** The last line of every request: nothing in here may throw, whatever the error holds. */
function fail(
  logger: Pick<Logger, 'error'>,
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const reed = asReedError(error, request);
  if (reed.code === 'internal_error' && !isReedError(error)) {
    try {
      logger.error({ err: error, url: request.url }, 'API request failed');
    } catch {}
  }
  if (reply.sent || reply.raw.headersSent) return void reply.raw.destroy();
  if (!request.raw.complete) {
    // A body we refused is discarded, not stored (the client may still be writing it: cutting the connection now
    // would hand it EPIPE instead of this answer), and the connection closes after the answer.
    reply.header('Connection', 'close');
    request.raw.resume();
  }
  if (reed.code === 'quota_exceeded') {
    const ms = Number(reed.details?.retryAfterMs);
    reply.header('Retry-After', String(Number.isFinite(ms) && ms > 0 ? Math.ceil(ms / 1000) : 1));
  }
  send(reply, STATUS[reed.code] ?? 422, { ok: false, error: reed.toJSON() });
}

function asReedError(error: unknown, request: FastifyRequest): ReedError {
  if (isReedError(error)) return error;
  const e = error as Partial<FastifyError> | undefined;
  if (e?.validation !== undefined) return validationError(e, request);
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new ReedError('request_too_large', 'the request body is larger than the limit');
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new ReedError('api_bad_request', String(e.message).slice(0, 256));
  return new ReedError('internal_error', 'internal error; see the host log');
}

/** A request that does not match its route's schema: `api_bad_request`, saying which parameter and why. */
function validationError(error: Partial<FastifyError>, request: FastifyRequest): ReedError {
  const first = error.validation?.[0];
  const where =
    error.validationContext === 'querystring' ? 'query parameter' : String(error.validationContext);
  const route = `${request.method} ${request.routeOptions.url ?? ''}`;
  const extra = (first?.params as { additionalProperty?: string } | undefined)?.additionalProperty;
  if (extra !== undefined)
    return new ReedError('api_bad_request', `${route} takes no ${where} "${extra.slice(0, 64)}"`);
  const name = first?.instancePath.split('/')[1] ?? '';
  if (error.validationContext === 'querystring' && name === 'env')
    return new ReedError('api_bad_request', 'the query parameter env must be NAME=VALUE');
  return new ReedError(
    'api_bad_request',
    `${route}: the ${where}${first?.instancePath ? ` ${first.instancePath}` : ''} ${first?.message ?? 'is not valid'}`,
  );
}

/** The answer when a body cannot be serialized (too deep, circular): fixed, so that sending never throws. */
const UNSERIALIZABLE = JSON.stringify({
  ok: false,
  error: { code: 'internal_error', message: 'the answer could not be serialized; see the host log' },
});

export function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  const text = jsonText(body);
  try {
    return reply
      .code(text === undefined ? 500 : status)
      .header('Content-Type', 'application/json')
      .send(text ?? UNSERIALIZABLE);
  } catch {
    reply.raw.destroy();
    return reply;
  }
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
