import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { CALLS } from './conformance-cases.js';

const BIN = fileURLToPath(new URL('../../bin/reed-plugins.js', import.meta.url));

export interface ApiResponse {
  status: number;
  body: {
    ok: boolean;
    output?: string;
    outputEncoding?: 'utf8' | 'base64';
    plugins?: { id: string; mode: string; state: string; error?: { code: string } }[];
    error?: { code: string; message: string; details?: { causeCode?: string } & Record<string, unknown> };
    plugin?: { id: string; version: string; state: string; history?: { action: string }[] } & Record<
      string,
      unknown
    >;
    removed?: string[];
  };
}

/** One request to a `reed-plugins serve` API on a Unix socket. */
export function api(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) });
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A conformance case (test/helpers/conformance-cases.ts) through the API: the same output or the same code. */
export async function expectConformantCall(
  socketPath: string,
  [plugin, fn, input, expected]: (typeof CALLS)[number],
) {
  const { status, body } = await api(socketPath, 'POST', `/v1/plugins/${plugin}/call/${fn}`, input);
  if ('output' in expected) {
    expect(body.error).toBeUndefined();
    expect(status).toBe(200);
    const bytes = Buffer.from(body.output ?? '', body.outputEncoding === 'base64' ? 'base64' : 'utf8');
    if (expected.output === 'EBADF') expect(bytes.readUInt32LE(0)).toBe(8);
    else expect(bytes.toString()).toContain(expected.output);
  } else {
    expect(body).toMatchObject({
      ok: false,
      error: {
        code: expected.code,
        ...(expected.causeCode ? { details: { causeCode: expected.causeCode } } : {}),
      },
    });
    expect(status).toBeGreaterThanOrEqual(400);
  }
}

export interface ServeProcess {
  child: ChildProcess;
  socket: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `reed-plugins serve` (the built CLI) on a socket in `dir`, resolving once it serves. */
export async function startServe(dir: string, args: string[]): Promise<ServeProcess> {
  const socket = join(dir, 'api.sock');
  const child = spawn(process.execPath, [BIN, 'serve', '--socket', socket, '--no-default-paths', ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir, REED_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (err.includes('serving ')) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`serve exited with ${code} before serving: ${err}`));
    });
  });
  return { child, socket, stderr: () => err, exited };
}
