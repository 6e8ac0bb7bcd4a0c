import { type TSchema, Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { ReedError } from '../errors.js';
import { DEFAULT_TENANT, type Tenant, type TenantDirectory } from '../tenants/tenant.js';

/** Who may use a route: anyone who reached the server, a tenant's principal (or an admin), an admin only. */
export type RouteScope = 'public' | 'tenant' | 'admin';

/** One route of the serve API as its modules declare it (plugin-routes.ts, tenant-routes.ts); routes.ts registers. */
export interface RouteDef {
  method: HTTPMethods;
  url: string;
  scope: RouteScope;
  summary: string;
  schema: { params?: TSchema; querystring?: TSchema; body?: TSchema; response: Record<number, TSchema> };
  /**
   * An async handler answers with `send`; a plain one (the call route) answers later through `reply` (an error with
   * `reply.send(error)`) and returns nothing.
   */
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown> | undefined;
  /** The route reads a JSON body (the tenant admin routes); others read their bodies as streams. */
  json?: boolean;
  /** A plugin's install, upgrade, removal or reload (the admin's only within the default tenant). */
  lifecycle?: boolean;
}

/** The tenant a request names (`:tenant`, else the default tenant), or 404 `tenant_not_found`. */
export function tenantOf(directory: TenantDirectory, request: FastifyRequest): Tenant {
  const id = (request.params as { tenant?: string }).tenant ?? DEFAULT_TENANT;
  const tenant = directory.get(id);
  if (tenant === undefined) throw new ReedError('tenant_not_found', `no tenant "${id.slice(0, 64)}"`);
  return tenant;
}

/** A params schema of string fields: percent-decoded segments (the host and the directory judge them). */
export function paramsSchema(names: string[]): TSchema {
  return Type.Object(Object.fromEntries(names.map((n) => [n, Type.String()])));
}
