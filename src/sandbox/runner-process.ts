import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReedError } from '../errors.js';
import type { ResolvedLimits } from '../host/limits.js';
import type { PluginSpec } from '../protocol/messages.js';
import { RunnerCgroup } from './cgroup.js';
import { OutputPump } from './output-pump.js';
import type { Runner } from './runner.js';
import { type EndpointOptions, RunnerEndpoint } from './runner-endpoint.js';
import type { RunnerLink } from './runner-link.js';
import { processStart } from './session.js';

/** The package's root directory, whether this file runs from src/ (tests) or dist/src/ (built). */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
export const PACKAGE_ROOT = findPackageRoot();
export const RUNNER_MAIN = join(PACKAGE_ROOT, 'dist', 'sandbox-runner', 'main.js');
/** Memory a runner needs besides the plugin's own: Node, V8's heap, buffers. Added to limits.memory_mb for the cgroup. */
export const RUNNER_ALLOWANCE_MB = 192;
/** Tasks (processes and threads) a runner's cgroup may hold: Node's own threads and a worker, no more. */
export const RUNNER_PIDS = 48;

export interface RunnerProcessOptions extends EndpointOptions {
  spec: PluginSpec;
  bytes: Uint8Array;
  /** Program and leading arguments; `--plugin-id ID --socket PATH` are appended. Default: Node with the runner. */
  runnerCommand?: string[];
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
 * A runner as a child process: in its own process group (and cgroup where possible), with a scrubbed
 * environment, as an unprivileged user when the host is root, and the secret on an inherited pipe.
 */
export class RunnerProcess implements Runner {
  readonly #endpoint: RunnerEndpoint;
  readonly #o: RunnerProcessOptions;
  child: ChildProcess | undefined;
  cgroup: RunnerCgroup | undefined;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  stderrTail = '';
  #markExited!: (result: { code: number | null; signal: string | null }) => void;

  constructor(options: RunnerProcessOptions) {
    this.#o = options;
    this.#endpoint = new RunnerEndpoint(options, PACKAGE_ROOT);
    this.exited = new Promise((resolve) => {
      this.#markExited = resolve;
    });
  }

  get dir(): string {
    return this.#endpoint.dir;
  }

  get link(): RunnerLink | undefined {
    return this.#endpoint.link;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const endpoint = this.#endpoint;
    await endpoint.listen();
    this.cgroup = RunnerCgroup.create(`${o.session.id}-${endpoint.dir.slice(-6)}`, {
      memoryBytes: (o.limits.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024,
      pids: RUNNER_PIDS,
    });
    const [program, ...args] = o.runnerCommand ?? defaultRunnerCommand(endpoint.workDir, o.limits);
    const child = spawn(
      program as string,
      [...args, '--plugin-id', o.pluginId, '--socket', endpoint.socketPath],
      {
        cwd: endpoint.workDir,
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
      endpoint.writeOwner({ pid: child.pid, start: processStart(child.pid) ?? '' });
    }
    const secretPipe = child.stdio[3] as NodeJS.WritableStream | null;
    secretPipe?.on('error', () => {});
    secretPipe?.end(`${endpoint.secret}\n`);
    // Bounded whatever the runner writes (output-pump.ts); the stderr tail (for start errors) stays 4 KiB.
    const pump = new OutputPump({
      pluginId: o.pluginId,
      logger: o.logger,
      onLine: (level, line) => {
        if (level === 2) this.stderrTail = `${this.stderrTail}\n${line}`.slice(-4096);
        o.host.log(level, line);
      },
    });
    if (child.stdout !== null) pump.attach(child.stdout, 1);
    if (child.stderr !== null) pump.attach(child.stderr, 2);
    await raceStart(
      endpoint.serve(o.spec, o.bytes),
      this.exited,
      o.startTimeoutMs,
      o.pluginId,
      () => this.stderrTail,
    );
  }

  get alive(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  async oomKilled(): Promise<boolean> {
    return this.cgroup?.oomKilled() === true || /heap out of memory|Allocation failed/i.test(this.stderrTail);
  }

  /** Signals the runner's whole process group (its children die with it). */
  #signal(signal: NodeJS.Signals): void {
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

  kill(): void {
    this.#signal('SIGKILL');
  }

  terminate(): void {
    this.#signal('SIGTERM');
  }

  /** Kills everything this runner owns and removes its directory. Idempotent. */
  async destroy(): Promise<void> {
    this.link?.destroy();
    if (this.alive) this.kill();
    if (this.child !== undefined) await this.exited;
    this.cgroup?.remove();
    await this.#endpoint.close();
  }
}

/** Ready, or a start error that says why: the deadline passed, or the runner exited (with its last words). */
export async function raceStart(
  ready: Promise<void>,
  exited: Promise<{ code: number | null; signal: string | null }>,
  timeoutMs: number,
  pluginId: string,
  tail: () => string,
): Promise<void> {
  const lastWords = () => {
    const t = tail().trim();
    return t === '' ? '' : `; its output ended with: ${t.slice(-1000)}`;
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ReedError(
            'sandbox_start_failed',
            `the runner of plugin "${pluginId}" did not become ready within ${timeoutMs} ms${lastWords()}`,
            { pluginId },
          ),
        ),
      timeoutMs,
    );
  });
  const died = exited.then(({ code, signal }) => {
    throw new ReedError(
      'sandbox_start_failed',
      `the runner of plugin "${pluginId}" exited during start (${signal ?? `code ${code}`})${lastWords()}`,
      { pluginId },
    );
  });
  try {
    await Promise.race([ready, deadline, died]);
  } finally {
    clearTimeout(timer);
    died.catch(() => {});
  }
}
