import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fchownSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ReedError } from '../../errors.js';
import type { FilesystemGrant } from '../../manifest/data-dir.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import type { PluginSpec } from '../../protocol/messages.js';
import type { HostApi } from '../../runtime/host-api.js';
import type { RunnerAddress, RunnerTransport } from '../../transport/transport.js';
import { UnixSocketTransport } from '../../transport/unix-socket.js';
import { type LinkOptions, RunnerLink } from './runner-link.js';
import { removeTree } from './safe-remove.js';
import { type HostSession, OWNER_FILE, type SandboxOwner } from './session.js';

/** The secret's file name in container mode (sandbox-runner/main.ts reads it beside the socket). */
export const SECRET_FILE = 'secret';

/** open(2) flags for a file the host creates in a sandbox directory: a new file, never through a link. */
export const CREATE_EXCLUSIVE =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export interface EndpointOptions {
  pluginId: string;
  host: HostApi;
  limits: ResolvedLimits;
  logger: Logger;
  runtimeDir: string;
  session: HostSession;
  /** The uid/gid the runner runs as, when it is not the host's: the directory and socket are handed to it. */
  runAs?: { uid: number; gid: number };
  /**
   * Process mode (bubblewrap): the runner works in a private tmpfs and sees only the socket, so the directory stays
   * the host's (root's, 0711: the runner's uid may pass through to the socket, never list or write), no working
   * directory is made in it, and only the socket is handed to the runner's uid (0600). The host then never
   * writes into a directory the runner can write.
   */
  privateWorkDir?: boolean;
  startTimeoutMs: number;
  /**
   * Where the runner sees the sandbox's socket, when not at its host path (bubblewrap binds it to a fixed path;
   * a container mounts the directory elsewhere). The address translator of the Unix socket transport.
   */
  runnerSocketPath?: string;
  /**
   * The transport the runner dials back on, when it is not the Unix socket in this directory (the TLS transport,
   * src/transport/tls-transport.ts): made here with the endpoint's `refused`, closed with the endpoint.
   */
  transport?: (refused: () => void) => RunnerTransport;
}

/**
 * What a runner's link holds its frames to, from the plugin's limits: a frame up to max_output_bytes and 1 MiB (a
 * Result's metadata and output), a Result's output to max_output_bytes and its fuel to fuel_per_call (runner-link.ts).
 */
export function linkBounds(
  limits: ResolvedLimits,
): Pick<LinkOptions, 'maxFrameBytes' | 'maxOutputBytes' | 'maxFuelPerCall'> {
  return {
    maxFrameBytes: limits.maxOutputBytes + 1024 * 1024,
    maxOutputBytes: limits.maxOutputBytes,
    maxFuelPerCall: limits.fuelPerCall,
  };
}

/**
 * The host's side of one sandbox, whatever runs the runner: a directory of its own (mode 0700, owned by the
 * runner's user) under `<runtime_dir>/sandboxes`, holding the listening socket, the owner record (for the
 * orphan sweep) and, for the runner, a working directory; the one-time secret; and the single accepted
 * connection. Process and container runners both use this. The connection comes through a RunnerTransport
 * (src/transport/): today the Unix socket in this directory.
 */
export class RunnerEndpoint {
  readonly dir: string;
  readonly socketPath: string;
  readonly workDir: string;
  readonly secret = randomBytes(32).toString('hex');
  link: RunnerLink | undefined;
  readonly transport: RunnerTransport;
  #connected: Promise<void> | undefined;
  #o: EndpointOptions;

  constructor(options: EndpointOptions, packageRoot: string) {
    this.#o = options;
    const root = join(options.runtimeDir, 'sandboxes');
    // Runners that run as another user must be able to pass through these two (but not list them).
    for (const dir of [options.runtimeDir, root]) {
      mkdirSync(dir, { recursive: true, mode: 0o711 });
      if (options.runAs !== undefined) chmodSync(dir, 0o711);
    }
    if (options.runAs !== undefined) {
      checkTraversable(root, options.runAs.uid, options.pluginId, 'the sandbox socket');
      checkTraversable(
        join(packageRoot, 'dist'),
        options.runAs.uid,
        options.pluginId,
        'the runner\u2019s code',
      );
    }
    this.dir = mkdtempSync(join(root, `${options.session.id.slice(0, 8)}-`));
    // Made by this process in a directory only it writes: nothing can have swapped it for a link yet.
    chmodSync(this.dir, options.privateWorkDir === true && options.runAs !== undefined ? 0o711 : 0o700);
    this.socketPath = join(this.dir, 's.sock');
    this.workDir = join(this.dir, 'work');
    // One runner per sandbox, one connection per runner: any other connection is refused at once.
    const refused = () =>
      options.logger.warn(
        { pluginId: options.pluginId, code: 'handshake_failed' },
        'refused a second connection to the sandbox socket',
      );
    this.transport =
      options.transport?.(refused) ??
      new UnixSocketTransport({
        path: this.socketPath,
        ...(options.runnerSocketPath === undefined ? {} : { runnerPath: options.runnerSocketPath }),
        ...(options.runAs === undefined ? {} : { owner: options.runAs }),
        refused,
      });
    this.writeOwner();
  }

  /** What the runner dials (its arguments: dialArguments in src/transport/transport.ts). */
  addressForRunner(): RunnerAddress {
    return this.transport.addressForRunner();
  }

  writeOwner(runner?: { pid: number; start: string }): void {
    // Written after the runner started: a fresh name, created exclusively and without following a link, then
    // renamed over the record (rename replaces a name, never what a link there points to).
    const temp = this.#ownerTemp();
    writeExclusive(temp, this.#ownerRecord(runner), 0o600);
    renameSync(temp, join(this.dir, OWNER_FILE));
  }

  #ownerTemp(): string {
    return join(this.dir, `.${OWNER_FILE}.${randomBytes(6).toString('hex')}`);
  }

  #ownerRecord(runner: { pid: number; start: string } | undefined): string {
    const owner: SandboxOwner = {
      ...this.#o.session,
      pluginId: this.#o.pluginId,
      ...(runner === undefined ? {} : { runnerPid: runner.pid, runnerStart: runner.start }),
    };
    return JSON.stringify(owner);
  }

  /** Listens; the first connection becomes the link, any later one is refused at once (the transport's contract). */
  async listen(): Promise<void> {
    const o = this.#o;
    if (o.privateWorkDir !== true) mkdirSync(this.workDir, { mode: 0o700 });
    await this.transport.listen();
    // Without a private work directory the runner works in this one: the directory is handed over too.
    if (o.runAs !== undefined && o.privateWorkDir !== true) {
      for (const p of [this.dir, this.workDir]) chownSync(p, o.runAs.uid, o.runAs.gid);
    }
    this.#connected = this.transport.accept().then((socket) => {
      this.link = new RunnerLink(socket, {
        pluginId: o.pluginId,
        secret: this.secret,
        ...linkBounds(o.limits),
        host: o.host,
        logger: o.logger,
        handshakeTimeoutMs: o.startTimeoutMs,
      });
    });
  }

  /**
   * Container mode's secret: a new file `secret` beside the socket (created exclusively, never through a link),
   * readable by `owner` alone, in a directory the runner cannot write; removed by the host once the runner has
   * authenticated (serve) or the sandbox stops (close).
   */
  writeSecretFile(owner: { uid: number; gid: number }): void {
    const path = join(this.dir, SECRET_FILE);
    const fd = openSync(path, CREATE_EXCLUSIVE, 0o400);
    try {
      fchownSync(fd, owner.uid, owner.gid);
      writeSync(fd, `${this.secret}\n`);
    } finally {
      closeSync(fd);
    }
    this.#secretFile = path;
  }

  #secretFile: string | undefined;

  /**
   * Waits for the runner to connect, authenticate, load the plugin and run its init. `dataDir`: the host's grant of
   * the plugin's data directory, whose quotas the runner's writes are leased from (disk-ledger.ts).
   */
  async serve(spec: PluginSpec, bytes: Uint8Array, dataDir?: FilesystemGrant): Promise<void> {
    await this.connect();
    await (this.link as RunnerLink).welcome(spec, bytes, dataDir);
  }

  /** Waits for the runner to connect and authenticate (a warm runner stops here until it is handed a plugin). */
  async connect(): Promise<void> {
    await this.#connected;
    const link = this.link as RunnerLink;
    await link.handshake();
    // Used once: nothing else may read it from now on (unlink removes the name, never follows a link).
    if (this.#secretFile !== undefined) {
      try {
        unlinkSync(this.#secretFile);
      } catch {}
    }
    this.#secretFile = undefined;
  }

  /**
   * A warm runner handed to a plugin (src/backends/pool/): the owner record, the link and this endpoint now speak
   * for that plugin (its id, host API, limits, logger). The runner's directory, socket and secret stay.
   */
  adopt(o: Pick<EndpointOptions, 'pluginId' | 'host' | 'limits' | 'logger' | 'startTimeoutMs'>): void {
    this.#o = { ...this.#o, ...o };
    this.link?.adopt({
      pluginId: o.pluginId,
      host: o.host,
      logger: o.logger,
      ...linkBounds(o.limits),
    });
  }

  async close(): Promise<void> {
    this.link?.destroy();
    await this.transport.close();
    // By descriptor, never by path: whatever a runner left or swapped in there (safe-remove.ts). Never throws.
    await removeTree(this.dir, this.#o.logger);
  }
}

/** Creates `path` as a new file (never through a link, never over an existing name) holding `data`. */
export function writeExclusive(path: string, data: string, mode: number): void {
  const fd = openSync(path, CREATE_EXCLUSIVE, mode);
  try {
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

/** A runner running as `uid` must pass through every directory above `dir`; say which one it cannot. */
function checkTraversable(dir: string, uid: number, pluginId: string, what: string): void {
  for (let d = dir; ; d = dirname(d)) {
    const st = statSync(d);
    const ok = st.uid === uid ? (st.mode & 0o100) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) {
      throw new ReedError(
        'sandbox_start_failed',
        `runners run as uid ${uid}, which cannot pass through ${d} (mode ${(st.mode & 0o777).toString(8)}) to reach ${what}; chmod o+x ${d}, or choose other directories`,
        { pluginId },
      );
    }
    if (dirname(d) === d) return;
  }
}
