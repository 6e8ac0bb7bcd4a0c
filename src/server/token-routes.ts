import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import { TENANT_ID_PATTERN, type TenantDirectory } from '../tenants/tenant.js';
import { markOutcome } from './audit-hooks.js';
import type { Authenticator } from './auth.js';
import { errors, NoQuery } from './schemas.js';

const STATUS: Partial<Record<Code, number>> = {
  tenant_not_found: 404,
  token_not_found: 404,
  api_bad_request: 400,
};

/** A token route's failure, answered here and noted for the audit. */
function fail(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (!isReedError(error)) throw error;
  markOutcome(request, error.code);
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
export function registerTokenRoutes(
  app: FastifyInstance,
  auth: Authenticator,
  tenants: TenantDirectory,
): void {
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
