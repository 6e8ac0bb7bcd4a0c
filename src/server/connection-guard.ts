import type { Server as HttpServer, ServerOptions } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';

/**
 * What a client may hold of a server of ours (the API on its Unix socket, the TLS listener, the metrics listener)
 * before it has sent a request, and for how long. Node bounds a request once its first byte has arrived
 * (headersTimeout, requestTimeout) and an idle kept-alive connection after an answer (keepAliveTimeout), but not a
 * connection that sends nothing at all: it was held for ever, each one a descriptor of the host's (the descriptors
 * its runners, sockets and files need too), and on the TLS listener a slot of MAX_TLS_CONNECTIONS.
 */

/** A connection that has not begun a request this long after it was accepted is closed. */
export const FIRST_REQUEST_MS = 10_000;
/** The whole head of a request (request line and headers) must arrive within this once it has begun. */
export const HEADERS_TIMEOUT_MS = 15_000;
/** A TLS handshake must be done within this (Node's default, 120 s, held a slot that long). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Options for http.createServer / https.createServer: Node checks headersTimeout and requestTimeout only every
 * connectionsCheckingInterval (30 s by default, which let a slow client hold its connection up to 30 s past them).
 */
export function serverTimeouts(requestTimeoutMs: number): ServerOptions {
  return {
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeoutMs),
    requestTimeout: requestTimeoutMs,
    connectionsCheckingInterval: 2_000,
  };
}

const started = Symbol('reed.requestStarted');
type GuardedSocket = Socket & { [started]?: true };

/**
 * Bounds `server`'s connections: at most `maxConnections` at once (one more is closed as it is accepted), and each
 * closed if it has not begun a request within FIRST_REQUEST_MS. The timer is the socket's inactivity timeout: any
 * byte that arrives restarts it, so a client trickling a request line is then bounded by headersTimeout. It is
 * cleared once a request begins, so a call that runs long with nothing on the wire is never cut by it (Node's
 * keep-alive timeout takes over between requests).
 */
export function guardConnections(
  server: HttpServer | HttpsServer,
  maxConnections: number,
  /**
   * `listen`: a 'request' listener of the guard's own clears the timer. `caller`: the server's request handler
   * calls requestBegan itself, first thing (the API's socket: every request's emit then calls one listener, not a
   * list of two).
   */
  requests: 'listen' | 'caller' = 'listen',
): void {
  server.maxConnections = maxConnections;
  // The TLS listener's plain sockets: the handshake bound. Its 'secureConnection' sockets are what http serves.
  const event = 'setSecureContext' in server ? 'secureConnection' : 'connection';
  server.on(event, (socket: Socket) => {
    socket.setTimeout(FIRST_REQUEST_MS);
  });
  if (requests === 'listen') server.on('request', (req: { socket: Socket }) => requestBegan(req.socket));
}

/** A request began on `socket`: its first-request timer (guardConnections) is cleared, once. */
export function requestBegan(socket: Socket): void {
  const guarded = socket as GuardedSocket;
  if (guarded[started] === true) return;
  guarded[started] = true;
  socket.setTimeout(0);
}
