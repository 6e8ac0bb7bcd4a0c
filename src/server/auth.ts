import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import { type AuditEvent, publishAudit } from '../events/audit.js';
import { DEFAULT_TENANT, TENANT_ID_PATTERN, type TenantDirectory } from '../tenants/tenant.js';
import type { AdminToken, TokenStore } from '../tenants/tokens.js';

/**
 * Who may do what on the serve API (issue 14, part 3; docs/API.md, "Authentication"; docs/SECURITY.md).
 *
 * Authentication: `Authorization: Bearer <token>`, one of
 * - the admin token (`serve --admin-token-file F`), or an admin token of the store: the admin routes and every tenant;
 * - a tenant token of the store (`POST /v1/admin/tenants/{t}/tokens`): that tenant's routes only.
 * Tokens are required on the TCP listener (`serve --listen`, always with TLS) and, once an admin token file is
 * given, on the Unix socket too. On a Unix socket with no admin token file, a request without an Authorization
 * header is admin, as before tokens existed: the socket's mode (0600) is the authentication. A token that is given
 * is always checked: a wrong one is 401 even there.
 *
 * Authorization, by the request's path (default deny: a path that names no tenant is an admin path):
 * - `/v1/health`, `/v1/openapi.json`: anyone (no token needed);
 * - `/v1/tenants/{t}/...`: tenant t's token or admin; another tenant's token gets the 404 of a tenant that does not
 *   exist (no existence leak);
 * - `/v1/plugins`, `/v1/plugins/...`: the default tenant's routes: its token or admin; another tenant's token 404;
 * - everything else (`/v1/admin/...`, unknown paths): admin; a tenant token gets 403 `forbidden`.
 * No or an invalid token where one is required: 401 `unauthenticated` with `WWW-Authenticate: Bearer`.
 *
 * Audit: every denial, and every answered request on an admin path (`/v1/admin/...`), publishes one event on
 * `reed:audit` (src/events/audit.ts) with the token's id, never the token.
 */

export type Transport = 'unix' | 'tcp';

/** An authenticated caller. `tokenId`: the store's token id, `admin` (the admin token file), `socket` (no tokens). */
export type Principal =
  | { kind: 'admin'; tokenId: string }
  | { kind: 'tenant'; tenant: string; tokenId: string };

export interface AuthOptions {
  /** Tenant and admin tokens made through the API. */
  tokens: TokenStore;
  /** `serve --admin-token-file`. */
  admin?: AdminToken | undefined;
}

/** What a path needs, and what it names (for the audit). */
export interface RouteScope {
  need: 'public' | 'admin' | 'tenant';
  /** The tenant a tenant path belongs to (`default` for /v1/plugins/...); on admin paths, the tenant it names. */
  tenant: string | undefined;
  plugin: string | undefined;
  /** An admin action (its answer is audited). */
  adminAction: boolean;
}

const PUBLIC = new Set(['/v1/health', '/v1/openapi.json']);
const MAX_AUDIT_ROUTE = 1024;

/** The path of a request URL, without query or fragment. */
export function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.search(/[?#]/);
  return q < 0 ? raw : raw.slice(0, q);
}

function decode(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Classifies a path (as the client sent it: segments are percent-decoded as the router decodes them). */
export function scopeOf(path: string): RouteScope {
  if (PUBLIC.has(path)) return { need: 'public', tenant: undefined, plugin: undefined, adminAction: false };
  const tenantRoute = /^\/v1\/tenants\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (tenantRoute !== null) {
    const rest = tenantRoute[2] ?? '';
    const plugin = /^plugins\/([^/]+)/.exec(rest);
    return {
      need: 'tenant',
      tenant: decode(tenantRoute[1]),
      plugin: decode(plugin?.[1]),
      adminAction: false,
    };
  }
  const defaultRoute = /^\/v1\/plugins(?:\/([^/]+).*)?$/.exec(path);
  if (defaultRoute !== null)
    return { need: 'tenant', tenant: DEFAULT_TENANT, plugin: decode(defaultRoute[1]), adminAction: false };
  const adminTenant = /^\/v1\/admin\/tenants\/([^/]+)(?:\/plugins\/([^/]+))?/.exec(path);
  const adminPlugin = /^\/v1\/admin\/plugins\/([^/]+)/.exec(path);
  return {
    need: 'admin',
    tenant: decode(adminTenant?.[1]) ?? (adminPlugin === null ? undefined : DEFAULT_TENANT),
    plugin: decode(adminTenant?.[2] ?? adminPlugin?.[1]),
    adminAction: path.startsWith('/v1/admin/'),
  };
}

/** A Unix socket's peer has no address; every TCP (and TLS) socket has one. */
export function transportOf(socket: Socket | undefined): Transport {
  return socket !== undefined && socket.remoteAddress === undefined && socket.remotePort === undefined
    ? 'unix'
    : 'tcp';
}

/** The answer to a tenant route the caller may not see: the same as for a tenant that does not exist. */
export function tenantNotFound(tenant: string): ReedError {
  return new ReedError('tenant_not_found', `no tenant "${tenant.slice(0, 64)}"`);
}

export class Authenticator {
  readonly #tokens: TokenStore;
  readonly #admin: AdminToken | undefined;

  constructor(options: AuthOptions) {
    this.#tokens = options.tokens;
    this.#admin = options.admin;
  }

  get tokens(): TokenStore {
    return this.#tokens;
  }

  /** Whether a request on this transport must carry a token. */
  tokensRequired(transport: Transport): boolean {
    return transport === 'tcp' || this.#admin !== undefined;
  }

  /**
   * The principal of an Authorization header, `anonymous` when there is none and none is needed here (the Unix
   * socket's peer, then admin), or the `unauthenticated` error.
   */
  authenticate(authorization: string | undefined, transport: Transport): Principal | ReedError {
    if (authorization === undefined) {
      if (!this.tokensRequired(transport)) return { kind: 'admin', tokenId: 'socket' };
      return new ReedError('unauthenticated', 'this route needs a token: Authorization: Bearer <token>');
    }
    const match = /^Bearer ([!-~]{1,512})$/i.exec(authorization);
    if (match === null)
      return new ReedError(
        'unauthenticated',
        'the Authorization header is not "Bearer <token>" (one token of printable characters)',
      );
    const token = match[1] as string;
    // Both checks run for every token, so which one matched does not show in the time taken.
    const isAdmin = this.#admin?.verify(token) ?? false;
    const stored = this.#tokens.verify(token);
    if (isAdmin) return { kind: 'admin', tokenId: 'admin' };
    if (stored === undefined)
      return new ReedError('unauthenticated', 'the token is not valid (unknown, revoked or malformed)');
    return stored.scope.kind === 'admin'
      ? { kind: 'admin', tokenId: stored.id }
      : { kind: 'tenant', tenant: stored.scope.tenant, tokenId: stored.id };
  }

  /** undefined when allowed, else the error to answer (403 `forbidden`, or a tenant's 404). */
  authorize(principal: Principal, scope: RouteScope): ReedError | undefined {
    if (scope.need === 'public' || principal.kind === 'admin') return undefined;
    if (scope.need === 'admin')
      return new ReedError(
        'forbidden',
        `a token of tenant "${principal.tenant}" may not use the admin routes`,
      );
    if (scope.tenant === principal.tenant) return undefined;
    return tenantNotFound(scope.tenant ?? '');
  }
}

const STATUS: Partial<Record<Code, number>> = {
  unauthenticated: 401,
  forbidden: 403,
  tenant_not_found: 404,
  token_not_found: 404,
  api_bad_request: 400,
};

const PRINCIPAL = Symbol('reed.principal');
const ERROR_CODE = Symbol('reed.errorCode');
type Marked = FastifyRequest & { [PRINCIPAL]?: Principal; [ERROR_CODE]?: string };

/** The caller of a request the hook let through (undefined for a public route reached without a token). */
export function principalOf(request: FastifyRequest): Principal | undefined {
  return (request as Marked)[PRINCIPAL];
}

function audit(
  request: FastifyRequest,
  scope: RouteScope,
  principal: Principal | undefined,
  status: number,
  outcome: string,
  kind: AuditEvent['kind'],
): void {
  const route = pathOf(request.raw.url);
  publishAudit({
    time: new Date().toISOString(),
    kind,
    tokenId: principal?.tokenId,
    principal: principal === undefined ? 'anonymous' : principal.kind,
    transport: transportOf(request.raw.socket),
    method: request.raw.method ?? '',
    route: route.length > MAX_AUDIT_ROUTE ? `${route.slice(0, MAX_AUDIT_ROUTE)}...` : route,
    tenant: scope.tenant?.slice(0, 64),
    plugin: scope.plugin?.slice(0, 128),
    status,
    outcome,
  });
}

function deny(reply: FastifyReply, error: ReedError): FastifyReply {
  const status = STATUS[error.code] ?? 403;
  if (status === 401) reply.header('WWW-Authenticate', 'Bearer');
  return reply.code(status).send({ ok: false, error: error.toJSON() });
}

/** A token route's failure, answered here (whatever error handler the app has) and noted for the audit. */
function fail(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (!isReedError(error)) throw error;
  (request as Marked)[ERROR_CODE] = error.code;
  return reply.code(STATUS[error.code] ?? 500).send({ ok: false, error: error.toJSON() });
}

/**
 * Adds authentication, authorization and the audit to a fastify instance (every route, the not-found handler's
 * too): an onRequest hook that answers 401/403/404 itself, and an onResponse hook that audits admin actions.
 * Register before the routes.
 */
export function registerAuth(app: FastifyInstance, auth: Authenticator): void {
  app.addHook('onRequest', async (request, reply) => {
    const scope = scopeOf(pathOf(request.raw.url));
    const transport = transportOf(request.raw.socket);
    const header = request.headers.authorization;
    if (scope.need === 'public' && header === undefined) return;
    const principal = auth.authenticate(header, transport);
    if (isReedError(principal)) {
      audit(request, scope, undefined, 401, principal.code, 'denied');
      return deny(reply, principal);
    }
    const refused = auth.authorize(principal, scope);
    if (refused !== undefined) {
      audit(request, scope, principal, STATUS[refused.code] ?? 403, refused.code, 'denied');
      return deny(reply, refused);
    }
    (request as Marked)[PRINCIPAL] = principal;
  });
  app.addHook('onError', async (request, _reply, error) => {
    (request as Marked)[ERROR_CODE] = isReedError(error)
      ? error.code
      : ((error as { code?: string }).code ?? 'internal_error');
  });
  app.addHook('onResponse', async (request, reply) => {
    const principal = principalOf(request);
    if (principal === undefined) return; // denied (audited then) or public
    const scope = scopeOf(pathOf(request.raw.url));
    if (!scope.adminAction) return;
    const status = reply.statusCode;
    const outcome = status < 400 ? 'ok' : ((request as Marked)[ERROR_CODE] ?? `http_${status}`);
    audit(request, scope, principal, status, outcome, 'done');
  });
}

/**
 * The token routes (admin only, as every /v1/admin/ path):
 *   POST   /v1/admin/tenants/{t}/tokens            201 {"ok":true,"token":"reed_...","id","tenant","created"} (shown once)
 *   GET    /v1/admin/tenants/{t}/tokens            {"ok":true,"tokens":[{"id","created"}...]}
 *   DELETE /v1/admin/tenants/{t}/tokens/{tokenId}  {"ok":true,"revoked":"<id>"}; 404 token_not_found
 * A tenant that does not exist is 404 `tenant_not_found`. When `DELETE /v1/admin/tenants/{t}` succeeds, the
 * tenant's tokens are revoked (a tenant made again later does not inherit them).
 */
export function registerTokenRoutes(
  app: FastifyInstance,
  auth: Authenticator,
  tenants: TenantDirectory,
): void {
  const tokens = auth.tokens;
  const tenantOf = (t: string): string => {
    if (!TENANT_ID_PATTERN.test(t) || tenants.get(t) === undefined) throw tenantNotFound(t);
    return t;
  };
  app.post<{ Params: { tenant: string } }>('/v1/admin/tenants/:tenant/tokens', async (request, reply) => {
    try {
      const tenant = tenantOf(request.params.tenant);
      const { token, info } = tokens.create({ kind: 'tenant', tenant });
      return reply
        .code(201)
        .header('Cache-Control', 'no-store')
        .send({ ok: true, token, id: info.id, tenant, created: info.created });
    } catch (error) {
      return fail(request, reply, error);
    }
  });
  app.get<{ Params: { tenant: string } }>('/v1/admin/tenants/:tenant/tokens', async (request, reply) => {
    try {
      const tenant = tenantOf(request.params.tenant);
      return { ok: true, tokens: tokens.list(tenant).map((t) => ({ id: t.id, created: t.created })) };
    } catch (error) {
      return fail(request, reply, error);
    }
  });
  app.delete<{ Params: { tenant: string; tokenId: string } }>(
    '/v1/admin/tenants/:tenant/tokens/:tokenId',
    async (request, reply) => {
      try {
        const tenant = tenantOf(request.params.tenant);
        const id = request.params.tokenId;
        if (!tokens.revoke(id, tenant))
          throw new ReedError('token_not_found', `tenant "${tenant}" has no token "${id.slice(0, 64)}"`);
        return { ok: true, revoked: id };
      } catch (error) {
        return fail(request, reply, error);
      }
    },
  );
  app.addHook('onResponse', async (request, reply) => {
    if (request.raw.method !== 'DELETE' || reply.statusCode >= 300) return;
    const gone = /^\/v1\/admin\/tenants\/([^/]+)$/.exec(pathOf(request.raw.url));
    const tenant = decode(gone?.[1]);
    if (tenant !== undefined && tenants.get(tenant) === undefined) tokens.revokeTenant(tenant);
  });
}
