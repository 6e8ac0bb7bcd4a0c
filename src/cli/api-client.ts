import { request } from 'node:http';
import type { Readable } from 'node:stream';
import { ReedError } from '../errors.js';

/** The largest answer read from a serve (a status of thousands of plugins fits many times over). */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export interface ApiAnswer {
  status: number;
  body: { ok: boolean; error?: { code: string; message: string } } & Record<string, unknown>;
}

/** A serve's socket, and the bearer token to send (`--token-file`) when it requires one. */
export interface ApiTarget {
  socketPath: string;
  token?: string | undefined;
}

/**
 * One request to a running `reed-plugins serve` on its Unix socket (docs/API.md). Resolves with the status and the
 * JSON answer, whatever the status; rejects with `api_unreachable` when nothing answers there, or when the answer
 * is not the API's JSON.
 */
export function apiRequest(
  target: string | ApiTarget,
  method: string,
  path: string,
  body?: Readable | Uint8Array,
  extraHeaders: Record<string, string> = {},
): Promise<ApiAnswer> {
  const { socketPath, token } =
    typeof target === 'string' ? { socketPath: target, token: undefined } : target;
  const headers = token === undefined ? extraHeaders : { ...extraHeaders, Authorization: `Bearer ${token}` };
  return new Promise((resolve, reject) => {
    const unreachable = (why: string, cause?: unknown) =>
      new ReedError('api_unreachable', `no reed-plugins serve answers on ${socketPath}: ${why}`, { cause });
    let answered = false;
    const req = request({ socketPath, method, path, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          reject(unreachable(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
        } else chunks.push(chunk);
      });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch (error) {
          reject(unreachable('the answer is not JSON', error));
        }
      });
      res.on('error', (error) => reject(unreachable(error.message, error)));
    });
    // A serve that refuses a body answers before it has read it all: writing the rest may then fail (EPIPE), and
    // the answer is what counts.
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (!answered) reject(unreachable(error.code ?? error.message, error));
    });
    if (body === undefined || body instanceof Uint8Array) req.end(body);
    else {
      body.on('error', (error) => {
        req.destroy();
        reject(error);
      });
      body.pipe(req);
    }
  });
}
