import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { jsonText } from '../safe-text.js';
import { DEFAULT_TENANT, type Tenant, type TenantDirectory } from '../tenants/tenant.js';
import { failureHeaders, failureOf, statusOf, UNSERIALIZABLE } from './answers.js';
import { type Authenticator, transportOf } from './auth.js';
import { type CallBodies, callAnswer } from './call-route.js';
import { type Principal, SOCKET_PEER } from './principal.js';

/**
 * The call route's fast path (the API bench, issue 14: serve at least 0.8x a bare node:http echo). Every request
 * reaches fastify but one: a call (`POST /v1/plugins/{id}/call/{fn}`, `POST /v1/tenants/{t}/plugins/{id}/call/{fn}`)
 * in its plain form, which is answered here with the route's own checks and answers, without fastify's request,
 * reply, routing, hooks and validation (~12 us of CPU per request on the bench's machine, as much as the budget).
 *
 * It takes a request only when nothing fastify would do differently applies: no query (WASI args and env), a path
 * without anything the URL parser or percent-decoding would change, no Content-Type but a plain media type, a
 * declared length within maxInputBytes, a principal that authenticates and may reach the tenant, a tenant that
 * exists and has room for one more body. Anything else (every refusal, so every denial and its audit) goes to
 * fastify, which finds it again and answers it. Once taken, the request is answered as the route's handler would:
 * the same body bound, call, answer JSON, failure statuses, headers and log line.
 *
 * buildApi turns it off when the call routes have any hook but the onRequest one of the API (a hook added later
 * runs for every call, as it expects).
 */
export interface FastPathOptions {
  directory: TenantDirectory;
  /** The API's Authenticator; undefined: every request is the socket's peer. */
  auth: Authenticator | undefined;
  bodies: CallBodies;
  maxInputBytes: number;
  logger: Pick<Logger, 'error'>;
}

/** What in a request target fastify's path would change (api-server.ts NEEDS_URL_PARSER), a query, a fragment. */
const NOT_PLAIN = /[^!-~]|[%\\#"'<>`{}^|?]|\/\.|\/\//;
/** A Content-Type of one media type without parameters: fastify's catch-all parser takes it, as every other. */
const PLAIN_MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]{1,127}\/[A-Za-z0-9!#$&^_.+-]{1,127}$/;

/** A plain call's tenant, plugin id and function, read from its request target. */
export interface CallTarget {
  tenantId: string;
  id: string;
  fn: string;
}

/**
 * The call a request target names, when it is a plain call route's path (`/v1/plugins/{id}/call/{fn}` or
 * `/v1/tenants/{t}/plugins/{id}/call/{fn}`, nothing NOT_PLAIN, no segment empty); undefined for anything else
 * (fastify's then). Read with indexOf and slices rather than split('/'), which made an array and every segment for
 * each call (~2 us of the fast path's ~6 in the API bench's profile).
 */
export function plainCallTarget(url: string): CallTarget | undefined {
  if (!url.startsWith('/v1/') || NOT_PLAIN.test(url)) return undefined;
  let tenantId: string;
  // Where the plugin id begins.
  let at: number;
  if (url.startsWith('plugins/', 4)) {
    tenantId = DEFAULT_TENANT;
    at = 12;
  } else if (url.startsWith('tenants/', 4)) {
    const end = url.indexOf('/', 12);
    // NOT_PLAIN refuses `//`, so no segment but the last is empty.
    if (end === -1 || !url.startsWith('/plugins/', end)) return undefined;
    tenantId = url.slice(12, end);
    at = end + 9;
  } else return undefined;
  const idEnd = url.indexOf('/', at);
  if (idEnd === -1 || !url.startsWith('/call/', idEnd)) return undefined;
  const fn = url.slice(idEnd + 6);
  // An empty function is a trailing slash (fastify's 404); one with a slash is a longer path.
  if (fn === '' || fn.includes('/')) return undefined;
  return { tenantId, id: url.slice(at, idEnd), fn };
}

/** A request handler that answers a plain call and says so (true), or leaves the request to fastify (false). */
export function callFastPath(
  options: FastPathOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { directory, auth, bodies, maxInputBytes, logger } = options;
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const target = plainCallTarget(req.url ?? '');
    if (target === undefined) return false;
    const { tenantId, id, fn } = target;
    const type = req.headers['content-type'];
    if (type !== undefined && !PLAIN_MEDIA_TYPE.test(type)) return false;
    if (Number(req.headers['content-length'] ?? 0) > maxInputBytes) return false;
    let principal: Principal;
    if (auth === undefined) principal = SOCKET_PEER;
    else
      try {
        principal = auth.authenticate(req.headers.authorization, transportOf(req.socket), false);
      } catch {
        return false;
      }
    if (!principal.admin && principal.tenant !== tenantId) return false;
    const tenant = directory.get(tenantId);
    if (tenant === undefined || bodies.refusal(tenant, id) !== undefined) return false;
    call(tenant, id, fn, req, res);
    return true;
  };
  function call(tenant: Tenant, id: string, fn: string, req: IncomingMessage, res: ServerResponse): void {
    const failed = (error: unknown) => fail(logger, error, req, res);
    bodies.read(tenant, req, maxInputBytes, (error, input) => {
      if (error !== undefined) {
        failed(error);
        return undefined;
      }
      const traceParent = req.headers.traceparent;
      const callOptions = traceParent === undefined ? undefined : { traceParent: String(traceParent) };
      let outcome: ReturnType<Tenant['call']>;
      try {
        outcome = tenant.call(id, fn, input, callOptions);
      } catch (thrown) {
        failed(thrown);
        return undefined;
      }
      // The body stays counted until this settles (CallBodies).
      return outcome.then((done) => {
        const text = callAnswer(done.output, done.stats);
        answer(res, text === undefined ? 500 : 200, text ?? UNSERIALIZABLE, []);
      }, failed);
    });
  }
}

/** As answers.ts `fail` does for fastify's requests: the failure's status, headers and JSON. Never throws. */
function fail(
  logger: Pick<Logger, 'error'>,
  error: unknown,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const reed = failureOf(logger, error, undefined, req.url);
  if (res.headersSent) return void res.destroy();
  const headers = failureHeaders(reed);
  if (!req.complete) {
    headers.push(['Connection', 'close']);
    req.resume();
  }
  const text = jsonText({ ok: false, error: reed.toJSON() });
  answer(res, text === undefined ? 500 : statusOf(reed), text ?? UNSERIALIZABLE, headers);
}

function answer(res: ServerResponse, status: number, text: string, extra: [string, string][]): void {
  try {
    // Raw name-value pairs (writeHead takes them as they are: no object to make and walk), as fastify writes a JSON
    // answer's type; an extra header (a failure's) replaces one of these of the same name, as it did in an object.
    const headers = [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(text)),
    ];
    for (const [name, value] of extra) {
      const lower = name.toLowerCase();
      const at = lower === 'content-type' ? 1 : lower === 'content-length' ? 3 : -1;
      if (at === -1) headers.push(lower, value);
      else headers[at] = value;
    }
    res.writeHead(status, headers);
    res.end(text);
  } catch {
    res.destroy();
  }
}
