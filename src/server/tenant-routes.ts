import { Type } from '@sinclair/typebox';
import type { RemovedTenantData, Tenant, TenantDirectory } from '../tenants/tenant.js';
import { send } from './answers.js';
import { paramsSchema, type RouteDef, tenantOf } from './route-def.js';
import { errors, NoQuery, TenantBody, TenantListBody, TenantSpecSchema, UsageBody } from './schemas.js';

/**
 * The tenant routes (docs/API.md): a tenant's usage (`GET /v1/tenants/{tenant}/usage`, the tenant's or an admin's)
 * and the admin's management of tenants (`/v1/admin/tenants/...`: list, one, create or change, remove). The token
 * routes are auth.ts's.
 */
export function tenantRoutes(directory: TenantDirectory): RouteDef[] {
  const info = (tenant: Tenant) => ({
    id: tenant.id,
    origin: tenant.origin,
    spec: tenant.spec,
    plugins: tenant.status().length,
  });
  return [
    {
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
        const tenant = tenantOf(directory, request);
        return send(reply, 200, { ok: true, usage: directory.usage(tenant.id) });
      },
    },
    {
      method: 'GET',
      url: '/v1/admin/tenants',
      scope: 'admin',
      summary: 'Every tenant',
      schema: { querystring: NoQuery, response: { 200: TenantListBody, ...errors(403) } },
      handler: async (_request, reply) => send(reply, 200, { ok: true, tenants: directory.list().map(info) }),
    },
    {
      method: 'GET',
      url: '/v1/admin/tenants/:tenant',
      scope: 'admin',
      summary: 'One tenant: its origin, spec and number of plugins',
      schema: {
        params: paramsSchema(['tenant']),
        querystring: NoQuery,
        response: { 200: TenantBody, ...errors(403, 404) },
      },
      handler: async (request, reply) =>
        send(reply, 200, { ok: true, tenant: info(tenantOf(directory, request)) }),
    },
    {
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
    },
    {
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
    },
    {
      method: 'GET',
      url: '/v1/admin/removed-tenants',
      scope: 'admin',
      summary:
        'The data removed tenants left (removed without purge): kept aside, never given to a later tenant of the same id',
      schema: { querystring: NoQuery, response: { 200: RemovedDataListBody, ...errors(403) } },
      handler: async (_request, reply) =>
        send(reply, 200, { ok: true, removed: directory.removedData().map(removedInfo) }),
    },
    {
      method: 'DELETE',
      url: '/v1/admin/removed-tenants/:tenant',
      scope: 'admin',
      summary:
        'Deletes the data removed tenants of this id left (not the data of a tenant of that id that exists)',
      schema: {
        params: paramsSchema(['tenant']),
        querystring: NoQuery,
        response: { 200: PurgedBody, ...errors(403, 404) },
      },
      handler: async (request, reply) => {
        const { tenant } = request.params as { tenant: string };
        const purged = await directory.purgeRemoved(tenant);
        return send(reply, 200, { ok: true, purged: purged.map(removedInfo) });
      },
    },
  ];
}

const removedInfo = (d: RemovedTenantData) => ({ tenant: d.tenant, generation: d.generation });
const RemovedData = Type.Object(
  {
    tenant: Type.String(),
    generation: Type.Union([Type.String(), Type.Null()], {
      description: 'the removed tenant\u2019s generation; null for a data directory of before generations',
    }),
  },
  { additionalProperties: false },
);
const RemovedDataListBody = Type.Object(
  { ok: Type.Literal(true), removed: Type.Array(RemovedData) },
  { additionalProperties: false },
);
const PurgedBody = Type.Object(
  { ok: Type.Literal(true), purged: Type.Array(RemovedData) },
  { additionalProperties: false },
);

const PurgeQuery = Type.Object(
  { purge: Type.Optional(Type.Array(Type.Union([Type.Literal('true'), Type.Literal('false')]))) },
  { additionalProperties: false },
);
const RemovedTenantBody = Type.Object(
  { ok: Type.Literal(true), removed: Type.String() },
  { additionalProperties: false },
);
