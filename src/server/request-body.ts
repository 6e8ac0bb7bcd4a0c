import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { ReedError } from '../errors.js';

/**
 * Request bodies, read by the routes themselves within their own bounds (fastify parses none of them): a call's
 * input whole in memory (`readBody`), a plugin archive as a stream (`bounded`, `discardRest`).
 */

/**
 * The whole body, at most `max` bytes (declared or sent: past it, `request_too_large` and the request destroyed),
 * given to `done` once it has ended; a request that closes or fails before its end gives `done` the error. Plain
 * listeners, not an async iterator: a call's small body costs no promise and no iterator (the API bench, issue 14).
 * `done` is called once: the listeners stay on the request once it has been called (they are the request's, gone
 * with it) and do nothing more, as four removeListener calls a body cost more than the check (the API bench).
 */
export function readBody(
  req: IncomingMessage,
  max: number,
  done: (error: Error | undefined, body: Buffer | undefined) => void,
): void {
  const tooLarge = () =>
    new ReedError('request_too_large', `the request body is larger than the limit of ${max} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > max) {
    done(tooLarge(), undefined);
    return;
  }
  let chunks: Buffer[] | undefined = [];
  let size = 0;
  /** Called once: the chunks are let go (the listeners, left on the request, keep nothing). */
  const finish = (error: Error | undefined) => {
    const got = chunks;
    if (got === undefined) return;
    chunks = undefined;
    done(error, error === undefined ? (got.length === 1 ? got[0] : Buffer.concat(got)) : undefined);
  };
  const onData = (chunk: Buffer) => {
    if (chunks === undefined) return;
    size += chunk.length;
    if (size > max) {
      // As the async iterator before did when its reader threw: the request is destroyed, its rest not read. The
      // body is done first, so that the close which follows does nothing.
      chunks = undefined;
      req.destroy();
      done(tooLarge(), undefined);
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = () => finish(undefined);
  const onError = (error: Error) => finish(error);
  const onClose = () => {
    if (chunks === undefined) return;
    const error = new Error('the client closed the connection before the request body ended');
    (error as NodeJS.ErrnoException).code = 'ERR_STREAM_PREMATURE_CLOSE';
    finish(error);
  };
  if (req.readableEnded) {
    done(undefined, Buffer.alloc(0));
    return;
  }
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  req.on('close', onClose);
}

/** A stream's rest, read and dropped (at most `max` bytes), so that the answer after it meets no EPIPE. */
export function discardRest(req: IncomingMessage, max: number): Promise<void> {
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

/** The request body as a stream that fails with `request_too_large` past `max` bytes (declared or sent). */
export function bounded(req: IncomingMessage, max: number): Transform {
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
