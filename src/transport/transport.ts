// The seam between a backend and its runner's connection back to the host (docs/ARCHITECTURE.md, "Transport").
// A transport listens, says what the runner dials, and hands over the one connection it accepts; framing and the
// Hello handshake are the same on every transport (connection.ts), and so is the protocol above them.
import { connect, type Server, type Socket } from 'node:net';

/**
 * What a runner dials, as the runner must be told it: `unix:PATH` (unix-socket.ts), later `tls://HOST:PORT`.
 * Data handed to the runner, never a path the Runner interface bakes in: a transport that is not a local socket
 * is a new implementation of RunnerTransport, not a rewrite of the backends.
 */
export type RunnerAddress = string;

export const UNIX_SCHEME = 'unix:';

/**
 * One sandbox's listening end. Contract for every implementation: it accepts ONE connection (the first; any
 * later one is refused at once), it hands over a stream already past its own handshake (TLS: the certificate
 * check) but not the protocol's Hello, and `close` leaves nothing behind (socket files, ports).
 */
export interface RunnerTransport {
  /** Starts listening; resolves when a runner can dial. */
  listen(): Promise<void>;
  /**
   * What the runner dials, as seen from where the runner runs (go-plugin's address translator: a bind mount, a
   * container's network or a NAT make the host's address another one there).
   */
  addressForRunner(): RunnerAddress;
  /** The accepted connection: resolves with the first one. */
  accept(): Promise<Socket>;
  /** Stops listening and removes what listening made. Idempotent; never throws. */
  close(): Promise<void>;
}

/**
 * Resolves with `server`'s first connection (on `event`: 'connection', or 'secureConnection' for TLS) and
 * destroys every later one at once, telling `refused`: one runner per sandbox, one connection per runner.
 */
export function acceptOne(server: Server, event: string, refused: () => void): Promise<Socket> {
  let first: Socket | undefined;
  return new Promise((resolve) => {
    server.on(event, (socket: Socket) => {
      if (first !== undefined) {
        refused();
        socket.destroy();
        return;
      }
      first = socket;
      resolve(socket);
    });
  });
}

/**
 * The runner's arguments that say where to dial. A Unix socket keeps the `--socket PATH` form every runner
 * understands (test fixtures' hostile runners included); other addresses go as `--connect ADDRESS`.
 */
export function dialArguments(address: RunnerAddress): string[] {
  return address.startsWith(UNIX_SCHEME)
    ? ['--socket', address.slice(UNIX_SCHEME.length)]
    : ['--connect', address];
}

/** The runner's side: dials `address`. Throws for a scheme this build of the runner does not speak. */
export function dial(address: RunnerAddress): Socket {
  if (address.startsWith(UNIX_SCHEME)) return connect(address.slice(UNIX_SCHEME.length));
  throw new Error(
    `cannot dial ${JSON.stringify(address.slice(0, 200))}: only ${UNIX_SCHEME}PATH is supported`,
  );
}
