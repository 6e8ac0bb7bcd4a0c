import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ReedError } from '../errors.js';
import { TENANT_ID_PATTERN, type TenantDirectory } from '../tenants/tenant.js';
import type { AdminToken, TokenStore } from '../tenants/tokens.js';
import { registerAudit } from './audit-hooks.js';
import type { Principal } from './principal.js';
import { registerTokenRoutes } from './token-routes.js';

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
 * id, never the token (audit-hooks.ts). The token routes are token-routes.ts's.
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

/**
 * Adds to the API's fastify instance (its root, before any route is added): the token routes, the audit (one
 * `reed:audit` event per denial and per admin action), and the revocation of a deleted tenant's tokens. The
 * principal itself comes from `auth.authenticateRequest` (ApiServerOptions.authenticate); every 401's
 * `WWW-Authenticate: Bearer` is answers.ts's.
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
  const revokeFirst = async (request: FastifyRequest) => {
    const { tenant } = request.params as { tenant?: string };
    if (typeof tenant !== 'string' || !TENANT_ID_PATTERN.test(tenant)) return;
    const existing = tenants.get(tenant);
    // - Before a tenant is created: whatever tokens its id still has are not its own.
    // - Before a tenant is deleted (a reed.toml or the default one cannot be): its tokens go first, so none is left
    //   for a tenant of that id created right after (a PUT queued behind the DELETE), and none calls it while it
    //   stops.
    if (
      (request.raw.method === 'PUT' && existing === undefined) ||
      (request.raw.method === 'DELETE' &&
        existing !== undefined &&
        existing.origin !== 'default' &&
        existing.origin !== 'config')
    )
      auth.tokens.revokeTenant(tenant);
  };
  // Only on the routes that create and delete a tenant: no other request runs a preHandler for it.
  app.addHook('onRoute', (route) => {
    if (route.url !== '/v1/admin/tenants/:tenant') return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.includes('PUT') && !methods.includes('DELETE')) return;
    const hooks = route.preHandler;
    route.preHandler =
      hooks === undefined ? [revokeFirst] : [...(Array.isArray(hooks) ? hooks : [hooks]), revokeFirst];
  });
}
