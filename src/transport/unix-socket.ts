import { chmodSync, lchownSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { acceptOne, type RunnerAddress, type RunnerTransport, UNIX_SCHEME } from './transport.js';

export interface UnixSocketOptions {
  /** The socket's path on the host, in a directory the host alone writes (the sandbox directory). */
  path: string;
  /** Where the runner sees the socket (bubblewrap binds it to a fixed path, a container mounts its directory). Default `path`. */
  runnerPath?: string;
  /** The runner's uid/gid when it is not the host's: the socket alone is handed to it (mode 0600). */
  owner?: { uid: number; gid: number };
  /** Told of every connection after the first (refused at once). */
  refused: () => void;
}

/**
 * Today's transport: a Unix socket in the sandbox's own directory, bind-mounted into the runner's view
 * (docs/SECURITY.md: the directory root-owned 0711, the socket 0600 and handed to the runner's uid alone, one
 * connection only). Nothing leaves the machine, so it needs no TLS: the kernel says who may connect.
 */
export class UnixSocketTransport implements RunnerTransport {
  readonly #o: UnixSocketOptions;
  #server: Server | undefined;
  #accepted: Promise<Socket> | undefined;

  constructor(options: UnixSocketOptions) {
    this.#o = options;
  }

  get path(): string {
    return this.#o.path;
  }

  async listen(): Promise<void> {
    const server = createServer();
    this.#server = server;
    this.#accepted = acceptOne(server, 'connection', this.#o.refused);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.path, () => resolve());
    });
    chmodSync(this.#o.path, 0o600);
    // The socket alone, without following a link (none can be there: the directory is the host's alone).
    if (this.#o.owner !== undefined) lchownSync(this.#o.path, this.#o.owner.uid, this.#o.owner.gid);
  }

  addressForRunner(): RunnerAddress {
    return `${UNIX_SCHEME}${this.#o.runnerPath ?? this.#o.path}`;
  }

  accept(): Promise<Socket> {
    if (this.#accepted === undefined) return Promise.reject(new Error('accept() before listen()'));
    return this.#accepted;
  }

  /** Stops listening; the socket file goes with its directory (the endpoint removes that by descriptor). */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  }
}
