import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import { jsonText } from '../safe-text.js';

/**
 * How the serve API answers: every answer's JSON (`send`), every failure as `{"ok":false,"error":{...}}` with its
 * stable code and HTTP status (`fail`), and the answer to a request Node's parser refused (`onClientError`).
 */

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
  // The host's disk has not the room for the tenant's file system: an answer of the server's storage, not the caller's.
  tenant_volume_no_space: 507,
  host_closed: 503,
  // Host-wide, not the tenant's doing (429 is a tenant's quota): every slot for archives and the queue are taken.
  install_busy: 503,
  // The plugin's runner is wedged: the host refuses rather than queue; it answers again once replaced (a retry).
  runner_backlogged: 503,
  internal_error: 500,
};

/**
 * A request Node's parser refused (bytes that are not HTTP, headers over MAX_HEADER_BYTES, too slow): as Node does,
 * an error answer when no answer is in flight on that connection, and the connection closed. An answer in flight
 * (the request before the bad bytes) is finished first, not cut or overtaken by the error's.
 */
export function onClientError(error: NodeJS.ErrnoException, socket: Socket): void {
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

/** The last line of every request: nothing in here may throw, whatever the error holds. */
export function fail(
  logger: Pick<Logger, 'error'>,
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  const reed = failureOf(logger, error, request, request.url);
  if (reply.sent || reply.raw.headersSent) return void reply.raw.destroy();
  if (!request.raw.complete) {
    // A body we refused is discarded, not stored (the client may still be writing it: cutting the connection now
    // would hand it EPIPE instead of this answer), and the connection closes after the answer.
    reply.header('Connection', 'close');
    request.raw.resume();
  }
  for (const [name, value] of failureHeaders(reed)) reply.header(name, value);
  const admin = (request.principal as { admin?: boolean } | undefined)?.admin === true;
  send(reply, statusOf(reed), {
    ok: false,
    error: admin ? reed.toJSON() : withoutHostPaths(reed.toJSON(), 0),
  });
}

/** An absolute path in an answer's text (not an API route): a word starting with `/` that holds another `/`. */
const HOST_PATH = /(?<=^|[\s'"(=])\/(?!v1\/)[^\s'"`,;()]*\/[^\s'"`,;()]*/g;
/** The part of a path that is inside a plugin's own directory, in the plugin store (staging or a version). */
const IN_PLUGIN = /\/plugins\/(?:staging\/[^/]+\/tree(?:\/[^/]+)??|versions\/[^/]+\/[^/]+)(?:\/(.*))?$/;

/**
 * A failure as a tenant sees it: absolute paths of the host's (its data_dir, the tenant's generation, the staging
 * directory's pid and start time) become the path inside the plugin, or `<host path>` (the sixth review: install
 * errors named them in `file` and `message`). The admin sees them as they are.
 */
function withoutHostPaths<T>(value: T, depth: number): T {
  if (typeof value === 'string')
    return value.replace(HOST_PATH, (path) => {
      const inside = IN_PLUGIN.exec(path);
      return inside === null ? '<host path>' : (inside[1] ?? '.');
    }) as T;
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => withoutHostPaths(v, depth + 1)) as T;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, withoutHostPaths(v, depth + 1)]),
  ) as T;
}

/** The failure as a ReedError (anything else is `internal_error`, logged with its cause). Never throws. */
export function failureOf(
  logger: Pick<Logger, 'error'>,
  error: unknown,
  request: FastifyRequest | undefined,
  url: string | undefined,
): ReedError {
  const reed = asReedError(error, request);
  if (reed.code === 'internal_error' && !isReedError(error)) {
    try {
      logger.error({ err: error, url }, 'API request failed');
    } catch {}
  }
  return reed;
}

/** A failure's HTTP status: by its code, else 422 (the call reached the host and failed). */
export function statusOf(reed: ReedError): number {
  return STATUS[reed.code] ?? 422;
}

/** The headers a failure's answer carries beside its JSON: when to retry a quota or a busy intake, how to authenticate. */
export function failureHeaders(reed: ReedError): [string, string][] {
  if (reed.code === 'quota_exceeded' || reed.code === 'install_busy') {
    const ms = Number(reed.details?.retryAfterMs);
    return [['Retry-After', String(Number.isFinite(ms) && ms > 0 ? Math.ceil(ms / 1000) : 1)]];
  }
  // Every 401 says how to authenticate (RFC 9110).
  if (reed.code === 'unauthenticated') return [['WWW-Authenticate', 'Bearer']];
  return [];
}

function asReedError(error: unknown, request: FastifyRequest | undefined): ReedError {
  if (isReedError(error)) return error;
  const e = error as Partial<FastifyError> | undefined;
  if (e?.validation !== undefined && request !== undefined) return validationError(e, request);
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
export const UNSERIALIZABLE = JSON.stringify({
  ok: false,
  error: { code: 'internal_error', message: 'the answer could not be serialized; see the host log' },
});

/** `body` as terminal-safe JSON (jsonText) with its status; 500 when it cannot be serialized. */
export function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return sendJson(reply, status, jsonText(body));
}

/** A JSON text made safe already (jsonText, or the call route's own writer), or undefined: 500. */
export function sendJson(reply: FastifyReply, status: number, text: string | undefined): FastifyReply {
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
