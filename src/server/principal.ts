/**
 * Who sent a request to the serve API, as the onRequest hook found it (ApiServerOptions.authenticate, from
 * src/server/auth.ts when tokens are configured): `request.principal` on every request. Routes are scoped
 * (routes.ts): `public` (health, the OpenAPI document), `tenant` (a tenant's plugins: its principal or an admin),
 * `admin` (the admin routes: an admin only).
 */
export interface Principal {
  /** May use every route, of every tenant. */
  admin: boolean;
  /** The one tenant a tenant principal may reach (absent for an admin). */
  tenant?: string;
  /** The token's id (never the token), for the audit log. Absent for the socket's peer without tokens. */
  tokenId?: string;
}

/** The peer of a Unix socket with no token configured: admin, as before tokens existed. */
export const SOCKET_PEER: Principal = Object.freeze({ admin: true });
