import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteOptions } from 'fastify';
import { isReedError } from '../errors.js';
import { type AuditEvent, publishAudit } from '../events/audit.js';
import { DEFAULT_TENANT } from '../tenants/tenant.js';
import { transportOf } from './auth.js';
import type { Principal } from './principal.js';

/**
 * The API's audit (issue 14, part 6): one `reed:audit` event (src/events/audit.ts) per denial (401, 403, and the
 * 404 of another tenant's route) and per admin action (an admin route, or a tenant's install, upgrade, removal or
 * reload), with the token's id, never the token. Published once the answer is written, with its status.
 *
 * Hooks only where they can act: a route on which an admin action can happen has an onResponse hook; on any other
 * (the calls, the reads) only a denial is audited, and a denial is an error, so the onError hook follows its answer
 * to its end. A call that succeeds runs no audit code at all.
 */

/** What the onError hook saw, for the audit's outcome. */
const ERROR_CODE = Symbol('reed.errorCode');
/** Set once the request's event is published (the onResponse hook and the error's listener both may see it). */
const AUDITED = Symbol('reed.audited');
type Marked = FastifyRequest & { [ERROR_CODE]?: string; [AUDITED]?: true };

/** Notes a failure's code for the audit's outcome (the token routes answer theirs without throwing). */
export function markOutcome(request: FastifyRequest, code: string): void {
  (request as Marked)[ERROR_CODE] = code;
}

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

/** Whether an admin action can happen on a route (its scope and methods): it gets the onResponse hook. */
function mayAct(route: RouteOptions): boolean {
  const scope = (route.config as { scope?: string } | undefined)?.scope;
  if (scope === 'admin') return true;
  if (scope !== 'tenant') return false;
  const methods: HTTPMethods[] = Array.isArray(route.method) ? route.method : [route.method];
  return methods.some((m) => m !== 'GET' && m !== 'HEAD') && !/\/call\/[^/]+$/.test(route.url ?? '');
}

/** Adds the audit to the API's fastify instance (its root, before any route is added). */
export function registerAudit(app: FastifyInstance): void {
  const onResponse = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    audit(request, reply);
    done();
  };
  app.addHook('onRoute', (route) => {
    if (!mayAct(route)) return;
    const hooks = route.onResponse;
    route.onResponse =
      hooks === undefined ? [onResponse] : [...(Array.isArray(hooks) ? hooks : [hooks]), onResponse];
  });
  app.addHook('onError', (request, reply, error, done) => {
    markOutcome(
      request,
      isReedError(error)
        ? error.code
        : String((error as { code?: unknown }).code ?? 'internal_error').slice(0, 64),
    );
    // Its answer's end ('close' follows 'finish', and comes too when the answer is cut).
    reply.raw.once('close', () => audit(request, reply));
    done();
  });
}

/** The request's event, if it is a denial or an admin action: once, whichever of the hooks sees it first. */
function audit(request: FastifyRequest, reply: FastifyReply): void {
  const marked = request as Marked;
  if (marked[AUDITED] === true) return;
  const status = reply.statusCode;
  const isDenial = denied(request, status);
  if (!isDenial && !adminAction(request)) return;
  marked[AUDITED] = true;
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
    outcome: status < 400 ? 'ok' : (marked[ERROR_CODE] ?? `http_${status}`),
  };
  publishAudit(event);
}
