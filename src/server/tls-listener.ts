import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { ReedError } from '../errors.js';
import { guardConnections, serverTimeouts, TLS_HANDSHAKE_TIMEOUT_MS } from './connection-guard.js';

/**
 * The TCP listener of `serve --listen HOST:PORT` (issue 14, part 3): HTTPS only, beside the Unix socket. Tokens
 * are required on it (src/server/auth.ts: every TCP peer must authenticate). `--tls-client-ca` adds mutual TLS:
 * a client must present a certificate that CA signed, or the handshake fails (requestCert, rejectUnauthorized).
 */
export interface TlsListenOptions {
  host: string;
  port: number;
  /** PEM files. */
  certFile: string;
  keyFile: string;
  clientCaFile?: string | undefined;
  maxHeaderSize: number;
  requestTimeoutMs: number;
  /** Default MAX_TLS_CONNECTIONS_PER_ADDRESS. */
  maxConnectionsPerAddress?: number;
}

/** `HOST:PORT`, `[IPv6]:PORT`; port 0 picks a free one (the listening address says which). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || port > 65535 || (match[1] !== undefined && isIP(host) !== 6))
    throw new ReedError('usage', `--listen takes HOST:PORT (or [IPv6]:PORT), not "${text.slice(0, 128)}"`);
  return { host, port };
}

const MAX_PEM_BYTES = 1024 * 1024;
/**
 * Connections the TCP listener holds at once; one more is closed as it is accepted. Anyone who reaches the port may
 * connect before any token is checked (a connection that sends nothing is held until its timeouts): without a bound,
 * enough of them took every descriptor serve has, and with them the Unix socket, the plugins' runners and files.
 */
export const MAX_TLS_CONNECTIONS = 1024;
/**
 * Connections one client address (an IPv6 client: its /64) holds at once; one more from it is closed as it is
 * accepted. Without it, one client took all MAX_TLS_CONNECTIONS and every other client was turned away.
 */
export const MAX_TLS_CONNECTIONS_PER_ADDRESS = 64;

/** What connections are counted by: the IPv4 address (also when IPv4-mapped), an IPv6 address's /64. */
export function clientKey(address: string): string {
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) return address.slice(7);
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** Closes a connection as it is accepted when its client already holds `max` (counted until each closes). */
function limitPerClient(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = clientKey(socket.remoteAddress ?? '');
    const n = open.get(key) ?? 0;
    if (n >= max) {
      socket.destroy();
      return;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
}

function pem(file: string, what: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (error) {
    throw new ReedError(
      'tls_invalid',
      `the TLS ${what} ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { file },
    );
  }
  if (data.length > MAX_PEM_BYTES || !data.includes('-----BEGIN '))
    throw new ReedError('tls_invalid', `the TLS ${what} ${file} is not a PEM file`, { file });
  return data;
}

/** Starts the HTTPS listener, its requests handed to `handler` (fastify's `routing`). */
export async function listenTls(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  options: TlsListenOptions,
): Promise<Server> {
  const cert = pem(options.certFile, 'certificate (--tls-cert)');
  const key = pem(options.keyFile, 'key (--tls-key)');
  const ca =
    options.clientCaFile === undefined ? undefined : pem(options.clientCaFile, 'client CA (--tls-client-ca)');
  let server: Server;
  try {
    server = createServer(
      {
        cert,
        key,
        minVersion: 'TLSv1.2',
        maxHeaderSize: options.maxHeaderSize,
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
        ...serverTimeouts(options.requestTimeoutMs),
        ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
      },
      handler,
    );
  } catch (error) {
    throw new ReedError(
      'tls_invalid',
      `the TLS certificate ${options.certFile} and key ${options.keyFile} cannot be used together: ${(error as Error).message}`,
      { file: options.certFile, cause: error },
    );
  }
  guardConnections(server, MAX_TLS_CONNECTIONS);
  limitPerClient(server, options.maxConnectionsPerAddress ?? MAX_TLS_CONNECTIONS_PER_ADDRESS);
  // A handshake that fails (no or a wrong client certificate) ends that connection only.
  server.on('tlsClientError', (_error, socket) => socket.destroy());
  try {
    server.listen(options.port, options.host);
    await once(server, 'listening');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new ReedError(
      'api_socket_failed',
      `cannot listen on ${options.host}:${options.port}: ${e.code ?? e.message}`,
      { cause: error },
    );
  }
  return server;
}
