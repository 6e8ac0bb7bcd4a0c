import type { Socket } from 'node:net';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import { type AuditEvent, publishAudit } from '../events/audit.js';
import { DEFAULT_TENANT, TENANT_ID_PATTERN, type TenantDirectory } from '../tenants/tenant.js';
import type { AdminToken, TokenStore } from '../tenants/tokens.js';
import type { Principal } from './principal.js';
import { errors, NoQuery } from './schemas.js';

/**
 * Authentication of the serve API, the token routes and the audit (issue 14, parts 3 and 6; docs/API.md,
 * "Authentication"; docs/SECURITY.md).
 *
 * A request's principal comes from `Authorization: Bearer <token>`:
 * - the admin token (`serve --admin-token-file F`), or an admin token of the store: admin (every route, every tenant);
 * - a tenant token of the store (`POST /v1/admin/tenants/{t}/tokens`): that tenant.
 * Tokens are required on the TCP listener (`serve --listen`, always TLS) and, once an admin token file is given, on
 * the Unix socket too; on a Unix socket with no admin token file, a request without an Authorization header is
 * admin, as before tokens existed (the socket's mode, 0600, is the authentication). A token that is given is always
 * checked: a wrong one is 401 even there. No token where one is needed, or a token that does not verify (unknown,
 * revoked, malformed): 401 `unauthenticated` with `WWW-Authenticate: Bearer`. Public routes (health, the OpenAPI
 * document) need no token; a token given there is checked all the same.
 *
 * Authorization is the route's scope against the principal (api-server.ts, `authorize`): admin routes need admin
 * (403 `forbidden`), a tenant route of another tenant answers the 404 of a tenant that does not exist.
 *
 * Audit: one event on `reed:audit` (src/events/audit.ts) per denial (401, 403, and the 404 of another tenant's
 * route) and per admin action (an admin route, or a tenant's install, upgrade, removal or reload), with the token's
 * id, never the token.
 */

export type Transport = 'unix' | 'tcp';

export interface AuthOptions {
  /** Tenant and admin tokens made through the API. */
  tokens: TokenStore;
  /** `serve --admin-token-file`. */
  admin?: AdminToken | undefined;
}

/** A Unix socket's peer has no address; every TCP (and TLS) socket has one. */
export function transportOf(socket: Socket | undefined): Transport {
  return socket !== undefined && socket.remoteAddress === undefined && socket.remotePort === undefined
    ? 'unix'
    : 'tcp';
}

/** Who a request on a public route without a token is: nobody (no tenant, not admin). */
const ANONYMOUS: Principal = Object.freeze({ admin: false });
/** The peer of a Unix socket when no admin token file is given: admin, as before tokens existed. */
const SOCKET_ADMIN: Principal = Object.freeze({ admin: true, tokenId: 'socket' });

export class Authenticator {
  readonly tokens: TokenStore;
  readonly #admin: AdminToken | undefined;

  constructor(options: AuthOptions) {
    this.tokens = options.tokens;
    this.#admin = options.admin;
  }

  /** Whether a request on this transport must carry a token. */
  tokensRequired(transport: Transport): boolean {
    return transport === 'tcp' || this.#admin !== undefined;
  }

  /**
   * The principal of an Authorization header on a transport, or the `unauthenticated` error. `publicRoute`: no
   * token is needed (a token given is still checked).
   */
  authenticate(authorization: string | undefined, transport: Transport, publicRoute = false): Principal {
    if (authorization === undefined) {
      if (!this.tokensRequired(transport)) return SOCKET_ADMIN;
      if (publicRoute) return ANONYMOUS;
      throw new ReedError('unauthenticated', 'this route needs a token: Authorization: Bearer <token>');
    }
    const match = /^Bearer +([!-~]{1,512})$/i.exec(authorization);
    if (match === null)
      throw new ReedError(
        'unauthenticated',
        'the Authorization header is not "Bearer <token>" (one token of printable characters)',
      );
    const token = match[1] as string;
    // Both checks run for every token (each in constant time), so which one matched does not show in the time.
    const isAdmin = this.#admin?.verify(token) ?? false;
    const stored = this.tokens.verify(token);
    if (isAdmin) return { admin: true, tokenId: 'admin' };
    if (stored === undefined)
      throw new ReedError('unauthenticated', 'the token is not valid (unknown, revoked or malformed)');
    return stored.scope.kind === 'admin'
      ? { admin: true, tokenId: stored.id }
      : { admin: false, tenant: stored.scope.tenant, tokenId: stored.id };
  }

  /** ApiServerOptions.authenticate: the principal of a fastify request (after routing: its scope is known). */
  readonly authenticateRequest = (request: FastifyRequest): Principal =>
    this.authenticate(
      request.headers.authorization,
      transportOf(request.raw.socket),
      request.routeOptions.config?.scope === 'public',
    );
}

/** What the onError hook saw, for the audit's outcome. */
const ERROR_CODE = Symbol('reed.errorCode');
type Marked = FastifyRequest & { [ERROR_CODE]?: string };

const MAX_AUDIT_ROUTE = 1024;

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.search(/[?#]/);
  const path = q < 0 ? raw : raw.slice(0, q);
  return path.length > MAX_AUDIT_ROUTE ? `${path.slice(0, MAX_AUDIT_ROUTE)}...` : path;
}

/** The tenant a request is about: its `:tenant`, else the default tenant's for /v1/plugins and /v1/admin/plugins. */
function tenantOf(request: FastifyRequest): string | undefined {
  const params = (request.params ?? {}) as { tenant?: unknown };
  if (typeof params.tenant === 'string') return params.tenant.slice(0, 64);
  const url = request.routeOptions.url ?? '';
  return url.startsWith('/v1/plugins') || url.startsWith('/v1/admin/plugins') ? DEFAULT_TENANT : undefined;
}

/** Whether the answer is a denial: 401, 403, or the 404 a tenant gets for another tenant's route. */
function denied(request: FastifyRequest, status: number): boolean {
  if (status === 401 || status === 403) return true;
  const principal = request.principal as Principal | undefined;
  return (
    status === 404 &&
    request.routeOptions.config?.scope === 'tenant' &&
    principal !== undefined &&
    !principal.admin &&
    principal.tenant !== tenantOf(request)
  );
}

/** An admin route, or a tenant's lifecycle action (install, upgrade, removal, reload): not a call, not a read. */
function adminAction(request: FastifyRequest): boolean {
  const scope = request.routeOptions.config?.scope;
  if (scope === 'admin') return true;
  if (scope !== 'tenant') return false;
  const method = request.raw.method ?? 'GET';
  return method !== 'GET' && method !== 'HEAD' && !/\/call\/[^/]+$/.test(request.routeOptions.url ?? '');
}

/**
 * Adds to the API's fastify instance (its root, before it is ready): the token routes, the audit (one `reed:audit`
 * event per denial and per admin action), the `WWW-Authenticate: Bearer` header of every 401, and the revocation
 * of a deleted tenant's tokens. The principal itself comes from `auth.authenticateRequest`
 * (ApiServerOptions.authenticate).
 */
export function registerAuth(app: FastifyInstance, auth: Authenticator, tenants: TenantDirectory): void {
  registerAudit(app);
  void app.register(async (api) => registerTokenRoutes(api, auth, tenants));
  // A token names its tenant by id only, so a token must never outlive its tenant: the next tenant of that id
  // (made through the API, or declared in reed.toml later) is someone else's.
  // - At the start: the tokens of a tenant the directory does not hold (taken out of reed.toml, or deleted while
  //   the store could not be written) are revoked.
  app.addHook('onReady', async () => {
    for (const t of auth.tokens.list())
      if (t.scope.kind === 'tenant' && tenants.get(t.scope.tenant) === undefined)
        auth.tokens.revoke(t.id, t.scope.tenant);
  });
  app.addHook('preHandler', async (request) => {
    if (request.routeOptions.url !== '/v1/admin/tenants/:tenant') return;
    const { tenant } = request.params as { tenant?: string };
    if (typeof tenant !== 'string' || !TENANT_ID_PATTERN.test(tenant)) return;
    const existing = tenants.get(tenant);
    // - Before a tenant is created: whatever tokens its id still has are not its own.
    // - Before a tenant is deleted (a reed.toml or the default one cannot be): its tokens go first, so none is left for a tenant
    //   of that id created right after (a PUT queued behind the DELETE), and none calls it while it stops.
    if (
      (request.raw.method === 'PUT' && existing === undefined) ||
      (request.raw.method === 'DELETE' &&
        existing !== undefined &&
        existing.origin !== 'default' &&
        existing.origin !== 'config')
    )
      auth.tokens.revokeTenant(tenant);
  });
}

function registerAudit(app: FastifyInstance): void {
  app.addHook('onError', async (request, _reply, error) => {
    (request as Marked)[ERROR_CODE] = isReedError(error)
      ? error.code
      : String((error as { code?: unknown }).code ?? 'internal_error').slice(0, 64);
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode === 401) reply.header('WWW-Authenticate', 'Bearer');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    const status = reply.statusCode;
    const isDenial = denied(request, status);
    if (!isDenial && !adminAction(request)) return;
    const principal = request.principal as Principal | undefined;
    const params = (request.params ?? {}) as { id?: unknown };
    const event: AuditEvent = {
      time: new Date().toISOString(),
      kind: isDenial ? 'denied' : 'done',
      tokenId: principal?.tokenId,
      principal:
        principal === undefined || (!principal.admin && principal.tenant === undefined)
          ? 'anonymous'
          : principal.admin
            ? 'admin'
            : 'tenant',
      transport: transportOf(request.raw.socket),
      method: request.raw.method ?? '',
      route: pathOf(request.raw.url),
      tenant: tenantOf(request),
      plugin: typeof params.id === 'string' ? params.id.slice(0, 128) : undefined,
      status,
      outcome: status < 400 ? 'ok' : ((request as Marked)[ERROR_CODE] ?? `http_${status}`),
    };
    publishAudit(event);
  });
}

const STATUS: Partial<Record<Code, number>> = {
  tenant_not_found: 404,
  token_not_found: 404,
  api_bad_request: 400,
};

/** A token route's failure, answered here and noted for the audit. */
function fail(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (!isReedError(error)) throw error;
  (request as Marked)[ERROR_CODE] = error.code;
  return reply
    .code(STATUS[error.code] ?? 500)
    .header('Content-Type', 'application/json')
    .send(JSON.stringify({ ok: false, error: error.toJSON() }));
}

const TokenTenantParams = Type.Object({ tenant: Type.String() });
const TokenParams = Type.Object({ tenant: Type.String(), tokenId: Type.String() });
const CreatedTokenBody = Type.Object(
  {
    ok: Type.Literal(true),
    token: Type.String({ description: 'the token: shown here once, never again' }),
    id: Type.String(),
    tenant: Type.String(),
    created: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
const TokenListBody = Type.Object(
  {
    ok: Type.Literal(true),
    tokens: Type.Array(
      Type.Object(
        { id: Type.String(), created: Type.String({ format: 'date-time' }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
const RevokedBody = Type.Object(
  { ok: Type.Literal(true), revoked: Type.String() },
  { additionalProperties: false },
);

/**
 * The token routes (scope admin; registerAuth adds them):
 *   POST   /v1/admin/tenants/{t}/tokens            201 {"ok":true,"token":"reed_...","id","tenant","created"}
 *   GET    /v1/admin/tenants/{t}/tokens            {"ok":true,"tokens":[{"id","created"}...]}
 *   DELETE /v1/admin/tenants/{t}/tokens/{tokenId}  {"ok":true,"revoked":"<id>"}; 404 token_not_found
 * The token is in the creation's answer only (with Cache-Control: no-store). A tenant that does not exist is 404
 * `tenant_not_found`.
 */
function registerTokenRoutes(app: FastifyInstance, auth: Authenticator, tenants: TenantDirectory): void {
  const tokens = auth.tokens;
  const tenantNamed = (t: string): string => {
    if (!TENANT_ID_PATTERN.test(t) || tenants.get(t) === undefined)
      throw new ReedError('tenant_not_found', `no tenant "${t.slice(0, 64)}"`);
    return t;
  };
  const config = { scope: 'admin' as const };
  app.route<{ Params: { tenant: string } }>({
    method: 'POST',
    url: '/v1/admin/tenants/:tenant/tokens',
    config,
    schema: {
      summary: 'Makes a token for the tenant: shown once',
      params: TokenTenantParams,
      querystring: NoQuery,
      response: { 201: CreatedTokenBody, ...errors(401, 403, 404) },
    },
    handler: async (request, reply) => {
      try {
        const tenant = tenantNamed(request.params.tenant);
        const { token, info } = tokens.create({ kind: 'tenant', tenant });
        return reply
          .code(201)
          .header('Cache-Control', 'no-store')
          .header('Content-Type', 'application/json')
          .send(JSON.stringify({ ok: true, token, id: info.id, tenant, created: info.created }));
      } catch (error) {
        return fail(request, reply, error);
      }
    },
  });
  app.route<{ Params: { tenant: string } }>({
    method: 'GET',
    url: '/v1/admin/tenants/:tenant/tokens',
    config,
    schema: {
      summary: 'The ids of the tenant\u2019s tokens (never the tokens)',
      params: TokenTenantParams,
      querystring: NoQuery,
      response: { 200: TokenListBody, ...errors(401, 403, 404) },
    },
    handler: async (request, reply) => {
      try {
        const tenant = tenantNamed(request.params.tenant);
        const list = tokens.list(tenant).map((t) => ({ id: t.id, created: t.created }));
        return reply
          .code(200)
          .header('Content-Type', 'application/json')
          .send(JSON.stringify({ ok: true, tokens: list }));
      } catch (error) {
        return fail(request, reply, error);
      }
    },
  });
  app.route<{ Params: { tenant: string; tokenId: string } }>({
    method: 'DELETE',
    url: '/v1/admin/tenants/:tenant/tokens/:tokenId',
    config,
    schema: {
      summary: 'Revokes a token of the tenant',
      params: TokenParams,
      querystring: NoQuery,
      response: { 200: RevokedBody, ...errors(401, 403, 404) },
    },
    handler: async (request, reply) => {
      try {
        const tenant = tenantNamed(request.params.tenant);
        const id = request.params.tokenId;
        if (!tokens.revoke(id, tenant))
          throw new ReedError('token_not_found', `tenant "${tenant}" has no token "${id.slice(0, 64)}"`);
        return reply
          .code(200)
          .header('Content-Type', 'application/json')
          .send(JSON.stringify({ ok: true, revoked: id }));
      } catch (error) {
        return fail(request, reply, error);
      }
    },
  });
}
