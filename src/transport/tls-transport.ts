import { constants } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { formatTlsAddress, TLS_ENV, TLS_VERSION } from './tls-address.js';
import type { RunnerAddress, RunnerTransport } from './transport.js';

/** PEM certificate and private key of the orchestrator's runner listener (src/pki/orchestrator-ca.ts issues them). */
export interface TlsServerCredentials {
  certPem: string;
  keyPem: string;
}

/** What every sandbox's TLS listener of one orchestrator shares: its server certificate, the CA, the name. */
export type TlsListenerMaterial = Pick<TlsTransportOptions, 'credentials' | 'caPem' | 'servername' | 'host'>;

/** What a runner is given to dial a TLS transport: where, the CA to verify the orchestrator with, the name to check. */
export interface TlsRunnerMaterial {
  /** `tls://HOST:PORT`, as the runner sees it: the argument of `--connect` (dialArguments). */
  address: RunnerAddress;
  /** The orchestrator's CA certificate, PEM. Not secret. */
  caPem: string;
  /** The DNS name the orchestrator's certificate carries; the runner refuses a certificate without it. */
  servername: string;
}

export interface TlsTransportOptions {
  /** The server certificate (issued for `servername`) and its key. */
  credentials: TlsServerCredentials;
  /** The CA that issued `credentials`: handed to the runner. */
  caPem: string;
  /** The name in the server certificate the runner checks (ORCHESTRATOR_SERVERNAME by default in src/pki/). */
  servername: string;
  /** Where to listen. Default 127.0.0.1, port 0 (a free one). */
  host?: string;
  port?: number;
  /**
   * The host (and port) the runner dials when it is not where this listens (go-plugin's address translator: an
   * overlay network's address, a published port). Default the listening host and port.
   */
  advertise?: { host: string; port?: number };
  /** The TLS handshake's deadline, from the TCP connection; the Hello's own deadline follows (connection.ts). */
  handshakeTimeoutMs: number;
  /** Mutual TLS: a runner must present a certificate this CA issued (OrchestratorCa.issueClient), or is refused. */
  clientCaPem?: string;
  /** TCP connections that have not finished their TLS handshake held at once; one more is closed. Default 8. */
  maxPendingHandshakes?: number;
  /** Told of every connection after the one accepted (closed at once). */
  refused: () => void;
  /** Told of a connection whose TLS handshake failed or timed out (closed; the sandbox goes on waiting). */
  handshakeFailed?: (error: Error) => void;
}

/**
 * The network transport (issue 18, part 2): the runner dials the orchestrator over TCP with TLS 1.3, verifies the
 * orchestrator's certificate against the orchestrator's own CA and its name, then says the same Hello as on the
 * Unix socket (the one-time secret; connection.ts). One listener, one port, one accepted connection per sandbox:
 *
 * - TLS 1.3 only; no session resumption: no tickets (SSL_OP_NO_TICKET; stateless tickets off), no session cache
 *   (Node keeps none unless told), and each sandbox's listener has a security context of its own, so nothing one
 *   sandbox's runner was given opens another sandbox's connection.
 * - A connection that does not finish its TLS handshake within `handshakeTimeoutMs` is closed, as is one that fails
 *   it (a plaintext client, a client that refused our certificate, a missing or foreign client certificate): it is
 *   not the sandbox's connection, and the sandbox's start deadline still runs. At most `maxPendingHandshakes` at once.
 * - The first connection that completes the handshake is the sandbox's (`accept`); from then on every TCP connection
 *   is closed as it is accepted, before any TLS (one connection per sandbox, as on the Unix socket).
 */
export class TlsRunnerTransport implements RunnerTransport {
  readonly #o: TlsTransportOptions;
  #server: Server | undefined;
  #accepted: Promise<Socket> | undefined;
  #first: TLSSocket | undefined;
  readonly #pending = new Set<Socket>();
  #port: number | undefined;

  constructor(options: TlsTransportOptions) {
    this.#o = options;
  }

  async listen(): Promise<void> {
    const o = this.#o;
    const server = createServer({
      cert: o.credentials.certPem,
      key: o.credentials.keyPem,
      minVersion: TLS_VERSION,
      maxVersion: TLS_VERSION,
      secureOptions: constants.SSL_OP_NO_TICKET,
      handshakeTimeout: o.handshakeTimeoutMs,
      ...(o.clientCaPem === undefined
        ? {}
        : { requestCert: true, rejectUnauthorized: true, ca: o.clientCaPem }),
    });
    this.#server = server;
    const maxPending = o.maxPendingHandshakes ?? 8;
    server.on('connection', (socket: Socket) => {
      if (this.#first !== undefined) {
        o.refused();
        socket.destroy();
        return;
      }
      if (this.#pending.size >= maxPending) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      this.#pending.add(socket);
      socket.once('close', () => this.#pending.delete(socket));
    });
    server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      socket.destroy();
      o.handshakeFailed?.(error);
    });
    this.#accepted = new Promise((resolve) => {
      server.on('secureConnection', (socket: TLSSocket) => {
        if (this.#first !== undefined) {
          o.refused();
          socket.destroy();
          return;
        }
        this.#first = socket;
        // The others still shaking hands will never be the sandbox's (this one's own TCP socket stays).
        for (const other of this.#pending)
          if (other.remotePort !== socket.remotePort || other.remoteAddress !== socket.remoteAddress)
            other.destroy();
        this.#pending.clear();
        resolve(socket);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => {});
    this.#port = (server.address() as AddressInfo).port;
  }

  /** The port listened on (after listen). */
  get port(): number {
    if (this.#port === undefined) throw new Error('port before listen()');
    return this.#port;
  }

  addressForRunner(): RunnerAddress {
    const host = this.#o.advertise?.host ?? this.#o.host ?? '127.0.0.1';
    return formatTlsAddress(host, this.#o.advertise?.port ?? this.port);
  }

  /** Everything the runner needs besides its secret: its `--connect` address, the CA and the server's name. */
  runnerMaterial(): TlsRunnerMaterial {
    return { address: this.addressForRunner(), caPem: this.#o.caPem, servername: this.#o.servername };
  }

  accept(): Promise<Socket> {
    if (this.#accepted === undefined) return Promise.reject(new Error('accept() before listen()'));
    return this.#accepted;
  }

  /**
   * Stops listening (the port is free again at once) and closes connections still shaking hands. The accepted
   * connection is its RunnerConnection's to close; this does not wait for it.
   */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
    server?.close();
  }
}

/** Starts a TLS transport: listening once this resolves. */
export async function listenTls(options: TlsTransportOptions): Promise<TlsRunnerTransport> {
  const transport = new TlsRunnerTransport(options);
  await transport.listen();
  return transport;
}

/** The runner's environment for `material` (sandbox-runner/tls-dial.ts reads it); its argv is dialArguments(address). */
export function runnerTlsEnvironment(material: TlsRunnerMaterial): Record<string, string> {
  return { [TLS_ENV.ca]: material.caPem, [TLS_ENV.servername]: material.servername };
}
