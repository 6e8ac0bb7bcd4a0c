import { once } from 'node:events';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import type { PluginHost } from '../host/plugin-host.js';
import type { CallWasi } from '../runtime/call-wasi.js';
import { jsonText } from '../safe-text.js';
import { adminRoute, decodeSegment } from './admin-routes.js';

/**
 * The orchestrator's own API (`reed-plugins serve`): HTTP/1.1 over a Unix socket, so that a CMS, or the tests
 * under docker-compose, can drive a PluginHost running elsewhere. Documented in docs/API.md.
 *
 *   GET  /v1/health                      {"ok":true}
 *   GET  /v1/plugins                     {"ok":true,"plugins":[PluginStatus...]}
 *   POST /v1/plugins/{id}/call/{fn}      body: the input bytes -> {"ok":true,"output",...,"stats"}
 *        [?arg=X&arg=Y&env=K%3DV]        a WASI command's per-call arguments and environment
 *   GET /v1/plugins/{id}, PUT|DELETE /v1/admin/plugins/{id}, POST /v1/admin/plugins/{id}/reload: the
 *        lifecycle routes (admin-routes.ts)
 *
 * Every failure is `{"ok":false,"error":{"code","message","pluginId"?,"details"?}}` with a stable code (docs/CODES.md).
 */
export interface ApiServerOptions {
  /** Largest request body accepted; a larger one gets 413 `request_too_large` and is discarded, not stored. */
  maxInputBytes: number;
  /** Largest plugin archive accepted by `PUT /v1/admin/plugins/{id}`. Default 256 MiB. */
  maxInstallBytes?: number;
}

export const DEFAULT_MAX_INPUT_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_INSTALL_BYTES = 256 * 1024 * 1024;
/**
 * The request line and headers together (Node's default is 16 KiB): a call's WASI args and env travel in the query
 * and may hold 64 KiB of text (src/runtime/call-wasi.ts), three times that percent-encoded.
 */
export const MAX_HEADER_BYTES = 256 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** HTTP status by code; every other ReedError from a call is 422 (the call reached the host and failed). */
const STATUS: Partial<Record<Code, number>> = {
  api_not_found: 404,
  plugin_not_loaded: 404,
  function_not_found: 404,
  api_method_not_allowed: 405,
  request_too_large: 413,
  api_bad_request: 400,
  api_unsupported_media_type: 415,
  install_archive_invalid: 400,
  install_id_mismatch: 400,
  plugin_has_dependants: 409,
  dependant_version_mismatch: 409,
  host_closed: 503,
  internal_error: 500,
};

export function createApiServer(host: PluginHost, options: ApiServerOptions): Server {
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    handle(host, options, req, res).catch((error: unknown) => {
      // The last line of every request: nothing in here may throw (a throw would be an unhandled rejection,
      // and the orchestrator would exit), whatever the error holds.
      try {
        if (!isReedError(error)) host.logger.error({ err: error, url: req.url }, 'API request failed');
      } catch {}
      const reed = isReedError(error)
        ? error
        : new ReedError('internal_error', 'internal error; see the host log');
      if (res.headersSent) return void res.destroy();
      if (!req.complete) {
        // A body we refused is discarded, not stored (the client may still be writing it: cutting the connection
        // now would hand it EPIPE instead of this answer), and the connection closes after the answer.
        res.setHeader('Connection', 'close');
        req.resume();
      }
      send(res, STATUS[reed.code] ?? 422, { ok: false, error: reed.toJSON() });
    });
  });
  // Bounds how long a client may take to send a request (and so how long a refused body is drained).
  server.requestTimeout = 60_000;
  return server;
}

async function handle(
  host: PluginHost,
  options: ApiServerOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://reed');
  const path = url.pathname;
  const only = (method: string) => {
    if (req.method !== method) {
      res.setHeader('Allow', method);
      throw new ReedError('api_method_not_allowed', `${req.method} ${path}: only ${method} is allowed`);
    }
  };
  if (path === '/v1/health') {
    only('GET');
    return send(res, 200, { ok: true });
  }
  if (path === '/v1/plugins') {
    only('GET');
    return send(res, 200, { ok: true, plugins: host.status() });
  }
  const admin = await adminRoute(host, req, url, only, options.maxInstallBytes ?? DEFAULT_MAX_INSTALL_BYTES);
  if (admin !== undefined) return send(res, admin.status, admin.body);
  const call = /^\/v1\/plugins\/([^/]+)\/call\/([^/]+)$/.exec(path);
  if (call === null) throw new ReedError('api_not_found', `no API route ${path}`);
  only('POST');
  const id = decodeSegment(call[1] as string);
  const fn = decodeSegment(call[2] as string);
  const wasi = callWasiFrom(url.searchParams);
  const input = await readBody(req, options.maxInputBytes);
  const outcome = await host.call(id, fn, input, wasi === undefined ? undefined : { wasi });
  send(res, 200, { ok: true, ...encodeOutput(outcome.output), stats: outcome.stats });
}

/**
 * The call route's query: `arg` (repeatable) appended to a WASI command's arguments, `env` (repeatable, `NAME=VALUE`,
 * the first `=` splits) merged over its environment. The host checks them (checkCallWasi); any other parameter, or
 * an `env` without `=`, is `api_bad_request`.
 */
function callWasiFrom(query: URLSearchParams): CallWasi | undefined {
  const args: string[] = [];
  const env: Record<string, string> = {};
  let any = false;
  for (const [name, value] of query) {
    any = true;
    if (name === 'arg') args.push(value);
    else if (name === 'env') {
      const at = value.indexOf('=');
      if (at <= 0) throw new ReedError('api_bad_request', `the query parameter env must be NAME=VALUE`);
      Object.defineProperty(env, value.slice(0, at), {
        value: value.slice(at + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else
      throw new ReedError(
        'api_bad_request',
        `the call route takes the query parameters arg and env, not "${name.slice(0, 64)}"`,
      );
  }
  if (!any) return undefined;
  return { ...(args.length > 0 ? { args } : {}), ...(Object.keys(env).length > 0 ? { env } : {}) };
}

async function readBody(req: IncomingMessage, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const tooLarge = () =>
    new ReedError('request_too_large', `the request body is larger than the limit of ${max} bytes`);
  if (declared > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The answer when a body cannot be serialized (too deep, circular): fixed, so that sending never throws. */
const UNSERIALIZABLE = JSON.stringify({
  ok: false,
  error: { code: 'internal_error', message: 'the answer could not be serialized; see the host log' },
});

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = jsonText(body);
  if (text === undefined) status = 500;
  const out = text ?? UNSERIALIZABLE;
  try {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) });
    res.end(out);
  } catch {
    res.destroy();
  }
}

/** Output as text when it is UTF-8, else base64, saying which (as `reed-plugins call --json` prints it). */
export function encodeOutput(output: Uint8Array): { output: string; outputEncoding: 'utf8' | 'base64' } {
  try {
    return { output: utf8.decode(output), outputEncoding: 'utf8' };
  } catch {
    return { output: Buffer.from(output).toString('base64'), outputEncoding: 'base64' };
  }
}

/**
 * Listens on `socketPath` with mode 0600 (only this user may drive the host). A socket file left by a dead
 * server is replaced; one a live server answers on, or any other file, is an error (`api_socket_in_use`).
 */
export async function listenOnSocket(server: Server, socketPath: string, mode = 0o600): Promise<void> {
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(socketPath);
  } catch {
    // nothing there
  }
  if (existing !== undefined) {
    if (!existing.isSocket())
      throw new ReedError('api_socket_in_use', `${socketPath} exists and is not a socket; not replacing it`);
    if (await answers(socketPath))
      throw new ReedError('api_socket_in_use', `another server is already listening on ${socketPath}`);
    unlinkSync(socketPath);
  }
  const umask = process.umask(0o177); // no window in which the socket is open to others
  try {
    server.listen(socketPath);
    await once(server, 'listening');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new ReedError(
      'api_socket_failed',
      `cannot listen on ${socketPath}: ${e.code ?? e.message} (does its directory exist, and may this user write to it?)`,
      { cause: error },
    );
  } finally {
    process.umask(umask);
  }
  chmodSync(socketPath, mode);
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
