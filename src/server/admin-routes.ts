import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { ReedError } from '../errors.js';
import type { PluginHost, PluginStatus } from '../host/plugin-host.js';

/**
 * The lifecycle routes of the serve API (docs/API.md, "Admin"):
 *
 *   GET    /v1/plugins/{id}                    {"ok":true,"plugin":PluginStatus}
 *   PUT    /v1/admin/plugins/{id}              body: a tar of the plugin directory -> {"ok":true,"plugin"}
 *   DELETE /v1/admin/plugins/{id}[?dependants=true]   {"ok":true,"removed":[id...]}
 *   POST   /v1/admin/plugins/{id}/reload       {"ok":true,"plugin"}
 *
 * Answers `undefined` when the path is none of these (the caller goes on with its other routes).
 */
export async function adminRoute(
  host: PluginHost,
  req: IncomingMessage,
  url: URL,
  only: (method: string) => void,
  maxInstallBytes: number,
): Promise<{ status: number; body: unknown } | undefined> {
  const path = url.pathname;
  const one = /^\/v1\/plugins\/([^/]+)$/.exec(path);
  if (one !== null) {
    only('GET');
    noQuery(url);
    return answer(host.pluginStatus(decodeSegment(one[1] as string)));
  }
  const admin = /^\/v1\/admin\/plugins\/([^/]+)(\/reload)?$/.exec(path);
  if (admin === null) return undefined;
  const id = decodeSegment(admin[1] as string);
  if (admin[2] !== undefined) {
    only('POST');
    noQuery(url);
    return answer(await host.reload(id));
  }
  if (req.method === 'DELETE') {
    const withDependants = dependantsParam(url);
    return { status: 200, body: { ok: true, removed: await host.remove(id, { withDependants }) } };
  }
  if (req.method !== 'PUT') only('PUT, DELETE');
  noQuery(url);
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-tar' && type !== 'application/tar')
    throw new ReedError(
      'api_unsupported_media_type',
      `PUT ${path} takes a tar of the plugin directory (Content-Type: application/x-tar), not "${String(type).slice(0, 64)}"`,
      { pluginId: id },
    );
  const body = bounded(req, maxInstallBytes);
  try {
    return answer(await host.install(id, body));
  } finally {
    req.unpipe(body);
    body.destroy();
    // A refused archive's rest is read and dropped before the answer (at most the limit): a client still writing
    // would otherwise meet a closed connection (EPIPE) instead of the answer that says why.
    await discardRest(req, maxInstallBytes);
  }
}

function discardRest(req: IncomingMessage, max: number): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', done);
      req.off('close', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > max) done();
    };
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.resume();
  });
}

const answer = (plugin: PluginStatus) => ({ status: 200, body: { ok: true, plugin } });

function noQuery(url: URL): void {
  const first = [...url.searchParams.keys()][0];
  if (first !== undefined)
    throw new ReedError(
      'api_bad_request',
      `${url.pathname} takes no query parameter, not "${first.slice(0, 64)}"`,
    );
}

/** `?dependants=true` (remove what depends on it too) or nothing; anything else is `api_bad_request`. */
function dependantsParam(url: URL): boolean {
  let withDependants = false;
  for (const [name, value] of url.searchParams) {
    if (name !== 'dependants' || (value !== 'true' && value !== 'false'))
      throw new ReedError('api_bad_request', 'DELETE takes only the query parameter dependants=true|false');
    withDependants = value === 'true';
  }
  return withDependants;
}

export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ReedError('api_not_found', `the path segment "${segment}" is not valid percent-encoding`);
  }
}

/** The request body as a stream that fails with `request_too_large` past `max` bytes (declared or sent). */
function bounded(req: IncomingMessage, max: number): Transform {
  const tooLarge = () =>
    new ReedError('request_too_large', `the plugin archive is larger than the limit of ${max} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > max) throw tooLarge();
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      if (size > max) done(tooLarge());
      else done(null, chunk);
    },
  });
  req.pipe(counter);
  // A client gone before the archive's end: the extraction sees an error, never waits for the rest.
  req.once('close', () => {
    if (!req.complete)
      counter.destroy(new Error('the client closed the connection before the archive ended'));
  });
  return counter;
}
