import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import type { ResolvedLimits } from '../host/limits.js';
import type { PluginSpec } from '../protocol/messages.js';
import type { HostApi } from '../runtime/host-api.js';
import { RunnerCgroup } from './cgroup.js';
import { RunnerLink } from './runner-link.js';
import { type HostSession, OWNER_FILE, processStart, type SandboxOwner } from './session.js';

/** The package's root directory, whether this file runs from src/ (tests) or dist/src/ (built). */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
const PACKAGE_ROOT = findPackageRoot();
export const RUNNER_MAIN = join(PACKAGE_ROOT, 'dist', 'sandbox-runner', 'main.js');
/** Memory a runner needs besides the plugin's own: Node, V8's heap, buffers. Added to limits.memory_mb for the cgroup. */
export const RUNNER_ALLOWANCE_MB = 192;
/** Tasks (processes and threads) a runner's cgroup may hold: Node's own threads and a worker, no more. */
export const RUNNER_PIDS = 48;

export interface RunnerProcessOptions {
  pluginId: string;
  spec: PluginSpec;
  bytes: Uint8Array;
  host: HostApi;
  limits: ResolvedLimits;
  logger: Logger;
  runtimeDir: string;
  session: HostSession;
  /** Program and leading arguments; `--plugin-id ID --socket PATH` are appended. Default: Node with the runner. */
  runnerCommand?: string[];
  /** Drop to this uid/gid (only when the host runs as root). */
  runAs?: { uid: number; gid: number };
  startTimeoutMs: number;
}

/** A runner running as `uid` must pass through every directory above its socket; say which one it cannot. */
function checkTraversable(dir: string, uid: number, pluginId: string, what: string): void {
  for (let d = dir; ; d = dirname(d)) {
    const st = statSync(d);
    const ok = st.uid === uid ? (st.mode & 0o100) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) {
      throw new ReedError(
        'sandbox_start_failed',
        `runners run as uid ${uid}, which cannot pass through ${d} (mode ${(st.mode & 0o777).toString(8)}) to reach ${what}; chmod o+x ${d}, choose other directories, or set [sandbox] runner_uid`,
        { pluginId },
      );
    }
    if (dirname(d) === d) return;
  }
}

/** The Node flags the runner runs with by default: a heap cap, and Node's permission model as an extra layer. */
export function defaultRunnerCommand(workDir: string, limits: ResolvedLimits): string[] {
  return [
    process.execPath,
    `--max-old-space-size=${Math.max(128, limits.memoryMb)}`,
    '--experimental-permission',
    // One flag per path; the package.json tells the loader these are ES modules.
    ...[
      join(PACKAGE_ROOT, 'package.json'),
      join(PACKAGE_ROOT, 'dist'),
      join(PACKAGE_ROOT, 'node_modules'),
      workDir,
    ].map((p) => `--allow-fs-read=${p}`),
    `--allow-fs-write=${workDir}`,
    '--allow-worker',
    // koffi (native plugins, and prctl) is an addon. Native plugin code is beyond the permission model anyway.
    '--allow-addons',
    '--no-warnings',
    RUNNER_MAIN,
  ];
}

/**
 * One runner process and everything it owns: a sandbox directory (mode 0700: the socket, the runner's working
 * directory, the owner record), the listening socket, the child in its own process group (and cgroup where
 * possible), and its connection. `start` resolves when the plugin is loaded; `destroy` removes everything.
 */
export class RunnerProcess {
  readonly dir: string;
  readonly socketPath: string;
  link: RunnerLink | undefined;
  child: ChildProcess | undefined;
  cgroup: RunnerCgroup | undefined;
  /** Resolves when the child has exited (with what killed it). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderrTail = '';
  #server: Server | undefined;
  #markExited!: (result: { code: number | null; signal: NodeJS.Signals | null }) => void;
  readonly #o: RunnerProcessOptions;
  readonly #secret = randomBytes(32).toString('hex');

  constructor(options: RunnerProcessOptions) {
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
        join(PACKAGE_ROOT, 'dist'),
        options.runAs.uid,
        options.pluginId,
        'the runner\u2019s code',
      );
    }
    this.dir = mkdtempSync(join(root, `${options.session.id.slice(0, 8)}-`));
    chmodSync(this.dir, 0o700);
    this.socketPath = join(this.dir, 's.sock');
    this.exited = new Promise((resolve) => {
      this.#markExited = resolve;
    });
    this.#writeOwner();
  }

  #writeOwner(): void {
    const owner: SandboxOwner = {
      ...this.#o.session,
      pluginId: this.#o.pluginId,
      ...(this.child?.pid === undefined
        ? {}
        : { runnerPid: this.child.pid, runnerStart: processStart(this.child.pid) ?? '' }),
    };
    writeFileSync(join(this.dir, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 });
  }

  async start(): Promise<void> {
    const o = this.#o;
    const workDir = join(this.dir, 'work');
    mkdirSync(workDir, { mode: 0o700 });
    const server = createServer();
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    if (o.runAs !== undefined) {
      for (const p of [this.dir, workDir, this.socketPath]) chownSync(p, o.runAs.uid, o.runAs.gid);
    }
    const connected = new Promise<Socket>((resolve) => {
      server.on('connection', (socket: Socket) => {
        if (this.link !== undefined) {
          // One runner per sandbox, one connection per runner: any other connection is refused at once.
          o.logger.warn(
            { pluginId: o.pluginId, code: 'handshake_failed' },
            'refused a second connection to the sandbox socket',
          );
          socket.destroy();
          return;
        }
        this.link = new RunnerLink(socket, {
          pluginId: o.pluginId,
          secret: this.#secret,
          maxFrameBytes: o.limits.maxOutputBytes + 1024 * 1024,
          host: o.host,
          logger: o.logger,
          handshakeTimeoutMs: o.startTimeoutMs,
        });
        resolve(socket);
      });
    });

    this.cgroup = RunnerCgroup.create(`${o.session.id}-${this.dir.slice(-6)}`, {
      memoryBytes: (o.limits.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024,
      pids: RUNNER_PIDS,
    });
    const [program, ...args] = o.runnerCommand ?? defaultRunnerCommand(workDir, o.limits);
    const child = spawn(
      program as string,
      [...args, '--plugin-id', o.pluginId, '--socket', this.socketPath],
      {
        cwd: workDir,
        // A scrubbed environment: nothing of the host's leaks in. The secret comes on fd 3, never in argv or env.
        env: {
          PATH: '/usr/local/bin:/usr/bin:/bin',
          LANG: 'C.UTF-8',
          REED_SECRET_FD: '3',
          REED_PDEATHSIG: '1',
        },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        ...(o.runAs === undefined ? {} : { uid: o.runAs.uid, gid: o.runAs.gid }),
      },
    );
    this.child = child;
    child.once('exit', (code, signal) => this.#markExited({ code, signal }));
    child.once('error', (error) => {
      this.stderrTail += `\n${error.message}`;
      this.#markExited({ code: null, signal: null });
    });
    if (child.pid !== undefined) {
      this.cgroup?.add(child.pid);
      this.#writeOwner();
    }
    const secretPipe = child.stdio[3] as NodeJS.WritableStream | null;
    secretPipe?.on('error', () => {});
    secretPipe?.end(`${this.#secret}\n`);
    for (const [stream, level] of [
      [child.stdout, 1],
      [child.stderr, 2],
    ] as const) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        if (level === 2) this.stderrTail = `${this.stderrTail}\n${line}`.slice(-4096);
        o.host.log(level, line);
      });
    }

    const deadline = new Promise<never>((_, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new ReedError(
              'sandbox_start_failed',
              `the runner of plugin "${o.pluginId}" did not become ready within ${o.startTimeoutMs} ms${this.#tail()}`,
              { pluginId: o.pluginId },
            ),
          ),
        o.startTimeoutMs,
      );
      timer.unref();
      void this.exited.then(() => clearTimeout(timer));
    });
    const died = this.exited.then(({ code, signal }) => {
      throw new ReedError(
        'sandbox_start_failed',
        `the runner of plugin "${o.pluginId}" exited during start (${signal ?? `code ${code}`})${this.#tail()}`,
        {
          pluginId: o.pluginId,
        },
      );
    });
    await Promise.race([
      (async () => {
        await connected;
        const link = this.link as RunnerLink;
        await link.handshake();
        await link.welcome(o.spec, o.bytes);
      })(),
      deadline,
      died,
    ]);
  }

  #tail(): string {
    const tail = this.stderrTail.trim();
    return tail === '' ? '' : `; its stderr ended with: ${tail.slice(-1000)}`;
  }

  get alive(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Signals the runner's whole process group (its children die with it). */
  signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {}
    }
  }

  /** Kills everything this runner owns and removes its directory. Idempotent. */
  async destroy(): Promise<void> {
    this.link?.destroy();
    if (this.alive) this.signal('SIGKILL');
    if (this.child !== undefined) await this.exited;
    this.cgroup?.remove();
    await new Promise<void>((resolve) =>
      this.#server === undefined ? resolve() : this.#server.close(() => resolve()),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
