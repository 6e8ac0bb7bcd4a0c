import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ReedError } from '../../errors.js';
import type { FilesystemGrant } from '../../manifest/data-dir.js';
import { processStart } from '../../process-identity.js';
import type { PluginSpec } from '../../protocol/messages.js';
import { filterBytes, tracingFilter } from '../../seccomp-filter.js';
import {
  runnerTlsEnvironment,
  type TlsListenerMaterial,
  TlsRunnerTransport,
} from '../../transport/tls-transport.js';
import { dialArguments } from '../../transport/transport.js';
import { type SandboxUsage, usageOfPid } from '../shared/cgroup-usage.js';
import { openDataDir, takeDataDirBack } from '../shared/data-dir.js';
import { type DataGroup, holdDataGroup } from '../shared/data-group.js';
import { OutputPump } from '../shared/output-pump.js';
import type { Runner } from '../shared/runner.js';
import { type EndpointOptions, RunnerEndpoint } from '../shared/runner-endpoint.js';
import type { RunnerLink } from '../shared/runner-link.js';
import { PACKAGE_ROOT, RUNNER_ALLOWANCE_MB, RUNNER_DATA_DIR, raceStart } from '../shared/runner-program.js';
import {
  DEFAULT_RUNNER_UIDS,
  leaseUid,
  type UidLease,
  type UidRange,
  verifyUidAhead,
} from '../shared/uid-pool.js';
import {
  bubblewrapArgs,
  findBubblewrap,
  INNER_SOCKET,
  INNER_WORK_DIR,
  readChildPid,
  runnerReadOnlyPaths,
} from './bubblewrap.js';
import { cgroupName, RunnerCgroup, type TenantCgroup, type TenantCgroupSlot } from './cgroup.js';
import { defaultRunnerCommand } from './runner-command.js';
import { spawnSandbox } from './spawn-sandbox.js';

/** Tasks (processes and threads) a runner's cgroup may hold: Node's own threads and a worker, no more. */
export const RUNNER_PIDS = 48;

/**
 * The environment a runner starts with, before its own variables (the secret's fd, TLS, seccomp): scrubbed, so that
 * nothing of the host's leaks in. bench/process.ts starts its baselines with it too.
 */
export const RUNNER_BASE_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  LANG: 'C.UTF-8',
};

export interface RunnerProcessOptions
  extends Omit<EndpointOptions, 'runAs' | 'privateWorkDir' | 'runnerSocketPath' | 'transport'> {
  spec: PluginSpec;
  bytes: Uint8Array;
  /**
   * Program and leading arguments, run inside the sandbox; `--plugin-id ID --socket PATH` are appended. Default:
   * Node with the runner.
   */
  runnerCommand?: string[];
  /** When the host is root: the uids runners are given, one per running sandbox. Default 600000-699999. */
  runnerUids?: UidRange;
  /** Whether the plugin's network permission was granted by the policy: it then keeps the host's network. */
  network?: boolean;
  /**
   * The plugin's data directory on the host (plan.grants.filesystem; the host made and checked it): bound alone at
   * RUNNER_DATA_DIR, read-only for "read". Absent: nothing of data_dir is in the sandbox.
   */
  dataDir?: FilesystemGrant | undefined;
  /** The host's tenant's cgroup, which this runner's cgroup goes under (its memory_mb and cpu_weight). */
  tenantCgroup?: TenantCgroupSlot;
  /** A warm runner of a pool (launched with the pool's options, assigned a plugin later). */
  warm?: boolean;
  /**
   * The runner dials back over TCP with TLS (src/transport/tls-transport.ts) on 127.0.0.1, with this material,
   * instead of the Unix socket: it then keeps the host's network namespace (docs/SECURITY.md). Absent: the socket.
   */
  tls?: () => Promise<TlsListenerMaterial>;
}

/** A runner's cgroup limits for a plugin's limits: its memory plus the runner's allowance, pids, CPU. */
export function runnerCgroupLimits(limits: RunnerProcessOptions['limits']): {
  memoryBytes: number;
  pids: number;
  cpus: number | undefined;
} {
  return {
    memoryBytes: (limits.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024,
    // Node's own threads need RUNNER_PIDS; a larger limits.pids is the plugin's to use.
    pids: Math.max(RUNNER_PIDS, limits.pids),
    cpus: limits.cpus,
  };
}

/**
 * bwrap's starter on cgroup v1 (`#spawn`): reed-starter (src/backends/process/reed-starter.c, built by
 * scripts/build-starter.mjs), one static exec; where it was not built, a POSIX shell, then util-linux's setpriv to
 * become the runner's uid (three dynamically linked execs: ~3 ms of CPU more on the start's path).
 */
export const REED_STARTER = join(PACKAGE_ROOT, 'dist', 'starter', 'reed-starter');
const SH = '/bin/sh';
const SETPRIV = '/usr/bin/setpriv';

let starterFound: string | null | undefined;

/**
 * The starter's program (REED_STARTER or SH), or undefined when there is none: looked for once. reed-starter runs
 * as root: it is taken only as a regular file of root's that no one else may write (as the host's own code is).
 */
export function bwrapStarter(): string | undefined {
  if (starterFound === undefined) {
    const own = statSync(REED_STARTER, { throwIfNoEntry: false });
    starterFound =
      own?.isFile() === true && own.uid === 0 && (own.mode & 0o022) === 0
        ? REED_STARTER
        : existsSync(SETPRIV)
          ? SH
          : null;
  }
  return starterFound ?? undefined;
}

/** The starter's arguments: join the cgroup through each of `tasks`, become `uid`:`gid`, exec `command`. */
export function starterArgs(
  starter: string,
  tasks: readonly string[],
  uid: number,
  gid: number,
  command: readonly string[],
): string[] {
  if (starter !== SH) return [String(tasks.length), ...tasks, String(uid), String(gid), ...command];
  return [
    '-c',
    // The shell exports a PWD of its own: unset, bwrap gets the environment given below and nothing more.
    `${tasks.map((_, i) => `echo 0 >"$${i + 1}"`).join(' && ')} && shift ${tasks.length} && unset PWD && exec "$@"`,
    'reed-join',
    ...tasks,
    SETPRIV,
    `--reuid=${uid}`,
    `--regid=${gid}`,
    '--clear-groups',
    ...command,
  ];
}

/** The extra fds bwrap gets: it writes the sandbox's init pid to one, and waits on the other before the runner starts. */
const INFO_FD = 4;
const BLOCK_FD = 5;
/** The data directory's fd, which bwrap binds (--bind-fd) and closes. */
const DATA_FD = 6;
/** The fd bwrap reads the seccomp program from (--seccomp), to install it before the runner starts. */
const SECCOMP_FD = 7;

/**
 * A runner as a child process under bubblewrap (src/backends/process/bubblewrap.ts): its own uid (when the host is root)
 * and namespaces, a read-only view of only what it needs, a private /tmp, in a cgroup (where possible) before it
 * runs, with a scrubbed environment and the secret on an inherited pipe.
 */
export class RunnerProcess implements Runner {
  #endpoint: RunnerEndpoint | undefined;
  #o: RunnerProcessOptions;
  #lease: UidLease | undefined;
  #dataGroup: DataGroup | undefined;
  /** What `spawn` started: bwrap, which stays outside the namespaces as their monitor. */
  child: ChildProcess | undefined;
  /** The host pid of the sandbox's init (pid 1 of its pid namespace): when it is gone, everything inside is. */
  initPid: number | undefined;
  /** The uid the plugin runs as (also outside the sandbox). */
  uid: number | undefined;
  cgroup: RunnerCgroup | undefined;
  /** The tenant's cgroup this runner's is in, held until destroy. */
  tenantCgroup: TenantCgroup | undefined;
  #tenantHeld = false;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  stderrTail = '';
  #markExited!: (result: { code: number | null; signal: string | null }) => void;

  constructor(options: RunnerProcessOptions) {
    this.#o = options;
    this.exited = new Promise((resolve) => {
      this.#markExited = resolve;
    });
  }

  /**
   * Another runner with the same settings (its own uid, cgroup, directory and secret): benches start it afresh.
   * `runnerCommand` replaces the runner program (bench/process.ts times `node -e 0` through the same sandbox).
   */
  sibling(runnerCommand?: string[]): RunnerProcess {
    return new RunnerProcess(runnerCommand === undefined ? this.#o : { ...this.#o, runnerCommand });
  }

  get dir(): string | undefined {
    return this.#endpoint?.dir;
  }

  get link(): RunnerLink | undefined {
    return this.#endpoint?.link;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Starts the runner and sends it the plugin. A warm runner (`launch`ed by a pool, then `assign`ed a plugin) is
   * handed out instead: the plugin's limits are applied to its cgroup, then it is sent the plugin.
   */
  async start(): Promise<void> {
    if (this.#assigned !== undefined) return this.#handOut(this.#assigned);
    const endpoint = await this.#spawn();
    const o = this.#o;
    await raceStart(
      endpoint.serve(o.spec, o.bytes, o.dataDir),
      this.exited,
      o.startTimeoutMs,
      o.pluginId,
      () => this.stderrTail,
    );
  }

  /**
   * A warm runner (src/backends/pool/): started, hardened and connected as `start` does, with the pool's options
   * (no plugin yet), up to the point where it would be sent a plugin.
   */
  async launch(): Promise<void> {
    const endpoint = await this.#spawn();
    const o = this.#o;
    await raceStart(endpoint.connect(), this.exited, o.startTimeoutMs, o.pluginId, () => this.stderrTail);
    this.#launched = true;
  }

  #launched = false;
  #assigned: RunnerProcessOptions | undefined;

  /** Whether it was a warm runner of a pool, handed to its plugin (the start reports it). */
  get pooled(): boolean {
    return this.#assigned !== undefined;
  }

  /**
   * A launched warm runner becomes this plugin's: its `start` hands it out. Only options the pool's shape matched
   * (src/backends/process/backend.ts, `fitsPool`) may differ from the pool's: the spec, bytes, host, limits applied
   * to the cgroup, logger; never the network, the data directory, the runner command or the tmpfs size.
   */
  assign(options: RunnerProcessOptions, handedOut?: () => void): void {
    if (!this.#launched || this.#assigned !== undefined)
      throw new Error('only a launched warm runner is assigned a plugin, once');
    this.#assigned = options;
    this.#handedOut = handedOut;
  }

  #handedOut: (() => void) | undefined;

  /** The hand-out, then (ready or not) `handedOut`: the pool launches the replacement (WarmPool.handedOut). */
  async #handOut(options: RunnerProcessOptions): Promise<void> {
    try {
      await this.#sendPlugin(options);
    } finally {
      this.#handedOut?.();
    }
  }

  async #sendPlugin(options: RunnerProcessOptions): Promise<void> {
    const endpoint = this.#endpoint as RunnerEndpoint;
    // The pool's tenant slot is the one this runner's cgroup is in (one backend, one tenant).
    this.#o = {
      ...options,
      ...(this.#o.tenantCgroup === undefined ? {} : { tenantCgroup: this.#o.tenantCgroup }),
    };
    const o = this.#o;
    endpoint.adopt(o);
    try {
      this.cgroup?.setLimits(runnerCgroupLimits(o.limits));
    } catch (error) {
      throw new ReedError(
        'sandbox_start_failed',
        `the limits of plugin "${o.pluginId}" could not be applied to a warm runner's cgroup: ${(error as Error).message}`,
        { pluginId: o.pluginId },
      );
    }
    const ready = raceStart(
      endpoint.serve(o.spec, o.bytes, o.dataDir),
      this.exited,
      o.startTimeoutMs,
      o.pluginId,
      () => this.stderrTail,
    );
    // The owner record names the plugin now, written once the Welcome is out (serve sends it after a few promise
    // turns; setImmediate comes after them), while the runner loads the plugin. Written at once, as at spawn (four
    // system calls, ~0.1 ms): on the thread pool its four round trips (open, write, close, rename) each waited for
    // the event loop and a pool thread, and on a loaded machine they ended 1-10 ms after the runner's Ready, which
    // the hand-out waited for, and cost the host ~1 ms more CPU (trace of 30 hand-outs, load ~10 on 2 cores).
    // The runner's pid and start time are the ones read at launch.
    const record = this.#owner;
    const owner =
      record === undefined
        ? undefined
        : new Promise((resolve) => setImmediate(resolve)).then(() => endpoint.writeOwner(record));
    await Promise.all([ready, owner]);
  }

  /** The runner's pid and start time (the owner record's), read once bwrap has started. */
  #owner: { pid: number; start: string } | undefined;

  /**
   * One function past 60 lines because it is one ordered recipe (uid lease, socket, cgroup, bubblewrap, the init
   * joining the cgroup before the runner starts, the secret, output) whose order is what keeps plugin code inside
   * its limits (docs/SECURITY.md); split into helpers, that order would be spread across them.
   */
  async #spawn(): Promise<RunnerEndpoint> {
    const o = this.#o;
    const bwrap = findBubblewrap(o.pluginId);
    const root = process.getuid?.() === 0;
    // A root host gives every running sandbox a uid of its own; otherwise the runner keeps the host's uid
    // (bubblewrap's namespaces still apply, but runners can then reach each other's processes through the kernel's
    // same-user rules only where namespaces do not separate them: docs/ARCHITECTURE.md).
    if (root) this.#lease = await leaseUid(o.runnerUids ?? DEFAULT_RUNNER_UIDS, o.pluginId);
    // With a data directory, the runner's group is the directory's, shared by the plugin's runners (data-group.ts).
    if (root && o.dataDir !== undefined)
      this.#dataGroup = await holdDataGroup(
        o.dataDir.hostPath,
        o.runnerUids ?? DEFAULT_RUNNER_UIDS,
        o.pluginId,
      );
    const uid = this.#lease?.uid ?? process.getuid?.() ?? 0;
    const gid = this.#dataGroup?.gid ?? this.#lease?.uid ?? process.getgid?.() ?? 0;
    this.uid = uid;
    const tls = o.tls === undefined ? undefined : await o.tls();
    let tlsTransport: TlsRunnerTransport | undefined;
    const endpoint = new RunnerEndpoint(
      {
        ...o,
        ...(root ? { runAs: { uid, gid } } : {}),
        privateWorkDir: true,
        runnerSocketPath: INNER_SOCKET,
        ...(tls === undefined
          ? {}
          : {
              transport: (refused: () => void) => {
                tlsTransport = new TlsRunnerTransport({
                  ...tls,
                  handshakeTimeoutMs: o.startTimeoutMs,
                  refused,
                  handshakeFailed: (error) =>
                    o.logger.warn(
                      { pluginId: o.pluginId, code: 'handshake_failed' },
                      `a connection to the sandbox's TLS port failed its handshake: ${error.message.slice(0, 200)}`,
                    ),
                });
                return tlsTransport;
              },
            }),
      },
      PACKAGE_ROOT,
    );
    this.#endpoint = endpoint;
    await endpoint.listen();
    if (o.tenantCgroup !== undefined) {
      this.tenantCgroup = o.tenantCgroup.acquire();
      this.#tenantHeld = true;
    }
    this.cgroup = RunnerCgroup.create(
      cgroupName(o.session, endpoint.dir.slice(-6)),
      runnerCgroupLimits(o.limits),
      undefined,
      this.tenantCgroup,
      // A warm runner joins the cpu hierarchy now: the plugin's quota is set there when it is handed out.
      o.warm === true,
    );
    // The directory's group goes to this runner's gid: it can enter it, no other plugin's runner can.
    const data =
      o.dataDir === undefined
        ? undefined
        : openDataDir(o.pluginId, o.dataDir.hostPath, root ? { gid, passable: true } : {});
    const program = tracingFilter();
    const seccomp = program === undefined ? undefined : filterBytes(program);
    const command =
      o.runnerCommand ??
      defaultRunnerCommand(
        INNER_WORK_DIR,
        o.limits,
        o.dataDir === undefined ? undefined : { path: RUNNER_DATA_DIR, readOnly: o.dataDir.readOnly },
        o.warm === true,
      );
    const sandbox = bubblewrapArgs({
      uid,
      gid,
      // Over TCP the runner needs a route to the host's 127.0.0.1: the host's network namespace.
      network: o.network === true || tlsTransport !== undefined,
      // The limit, plus the room the runner's private copy of a native library takes there.
      tmpfsBytes: o.limits.tmpfsMb * 1024 * 1024 + (o.spec.type === 'native' ? o.bytes.length + 65_536 : 0),
      shmBytes: o.limits.tmpfsMb * 1024 * 1024,
      readOnly: runnerReadOnlyPaths(PACKAGE_ROOT, o.runnerCommand),
      socket: tlsTransport === undefined ? endpoint.socketPath : undefined,
      infoFd: INFO_FD,
      blockFd: BLOCK_FD,
      ...(seccomp === undefined ? {} : { seccompFd: SECCOMP_FD }),
      ...(data === undefined || o.dataDir === undefined
        ? {}
        : { dataDir: { fd: DATA_FD, readOnly: o.dataDir.readOnly } }),
    });
    const bwrapArgv = [
      ...sandbox,
      '--',
      ...command,
      '--plugin-id',
      o.pluginId,
      ...dialArguments(endpoint.addressForRunner()),
    ];
    // A root host on cgroup v1 starts bwrap through a starter that joins the runner's cgroup itself first, still
    // as root, then becomes the runner's uid (real, effective and saved ids, no groups, so no capabilities left) and
    // execs bwrap: bwrap and its init are in the cgroup from their start, and no process is moved from outside,
    // which waited for an RCU grace period on the start's path (cgroup.ts, selfJoinFiles).
    const starter = root ? bwrapStarter() : undefined;
    const selfJoin = starter === undefined ? undefined : this.cgroup?.selfJoinFiles();
    const child = await spawnSandbox(
      selfJoin === undefined || starter === undefined ? bwrap : starter,
      selfJoin === undefined || starter === undefined
        ? bwrapArgv
        : starterArgs(starter, selfJoin, uid, gid, [bwrap, ...bwrapArgv]),
      {
        cwd: '/',
        // A scrubbed environment: nothing of the host's leaks in. The secret comes on fd 3, never in argv or env.
        // No REED_PDEATHSIG: bwrap arms the runner's death signal itself, and inside a pid namespace the runner's
        // parent is pid 1, which the runner's own check would take for a dead host.
        env: {
          ...RUNNER_BASE_ENV,
          REED_SECRET_FD: '3',
          ...(tlsTransport === undefined ? {} : runnerTlsEnvironment(tlsTransport.runnerMaterial())),
          // bwrap installed the runner's seccomp filter: the runner need not (sandbox-runner/main.ts).
          ...(seccomp === undefined ? {} : { REED_SECCOMP: 'installed' }),
        },
        detached: true,
        stdio: [
          'ignore',
          'pipe',
          'pipe',
          'pipe',
          'pipe',
          'pipe',
          data ?? 'ignore',
          seccomp === undefined ? 'ignore' : 'pipe',
        ],
        ...(root && selfJoin === undefined ? { uid, gid } : {}),
      },
      o.pluginId,
    ).finally(() => {
      // bwrap holds its own copy until it has bound it: the host's is not needed past the spawn.
      if (data !== undefined) closeSync(data);
    });
    this.child = child;
    // bwrap reads the program to its end before it makes the sandbox (and before it writes INFO_FD).
    const seccompPipe = (child.stdio as unknown as (Writable | null)[])[SECCOMP_FD];
    seccompPipe?.on('error', () => {});
    if (seccomp !== undefined) seccompPipe?.end(seccomp);
    child.once('exit', (code, signal) => this.#markExited({ code, signal }));
    child.once('error', (error) => {
      this.stderrTail += `\n${error.message}`;
      this.#markExited({ code: null, signal: null });
    });
    // Bounded whatever the runner writes (output-pump.ts); the stderr tail (for start errors) stays 4 KiB.
    const pump = new OutputPump({
      pluginId: o.pluginId,
      logger: o.logger,
      onLine: (level, line) => {
        if (level === 2) this.stderrTail = `${this.stderrTail}\n${line}`.slice(-4096);
        // The plugin's host once a warm runner is handed out (the pool's logger until then).
        this.#o.host.log(level, line);
      },
    });
    if (child.stdout !== null) pump.attach(child.stdout, 1);
    if (child.stderr !== null) pump.attach(child.stderr, 2);
    if (child.pid !== undefined) {
      this.#owner = { pid: child.pid, start: processStart(child.pid) ?? '' };
      endpoint.writeOwner(this.#owner);
    }
    // bwrap has made the namespaces and waits on BLOCK_FD: its init joins the cgroup before it starts the runner,
    // so no plugin code ever runs outside the cgroup's limits.
    const block = (child.stdio as unknown as (Writable | null)[])[BLOCK_FD];
    block?.on('error', () => {});
    // Once bwrap has said the init's pid: both are checked to be in the cgroup (the starter joined it), or else
    // (no starter, or it did not) moved there together, on the thread pool, not the host's thread (the first move of
    // a burst waits for an RCU grace period). A pid that cannot join (bwrap already gone: ESRCH) means no start:
    // bwrap is killed and never unblocked, and raceStart below reports the exit with bwrap's own last words (a
    // path it could not bind, say, or the starter's).
    let joined = false;
    if (child.pid !== undefined) {
      const initPid = await readChildPid(child.stdio[INFO_FD] as Readable);
      if (initPid !== undefined) this.initPid = initPid;
      try {
        const cgroup = this.cgroup;
        const starterJoined =
          selfJoin !== undefined &&
          initPid !== undefined &&
          cgroup?.holds(child.pid) &&
          cgroup.holds(initPid);
        if (cgroup !== undefined && !starterJoined)
          await cgroup.add(child.pid, ...(initPid === undefined ? [] : [initPid]));
        joined = true;
      } catch {}
    }
    if (joined) block?.end('1');
    else this.kill();
    const secretPipe = child.stdio[3] as NodeJS.WritableStream | null;
    secretPipe?.on('error', () => {});
    secretPipe?.end(`${endpoint.secret}\n`);
    // The next start's uid is scanned for now, while this runner boots Node (~40 ms in which the host waits), not on
    // that start's path (uid-pool.ts). After this turn of the event loop: the runner was unblocked above.
    if (this.#lease !== undefined) {
      const range = o.runnerUids ?? DEFAULT_RUNNER_UIDS;
      setImmediate(() => verifyUidAhead(range, o.pluginId));
    }
    return endpoint;
  }

  /** Known once started: what bubblewrap, the cgroup and the uid lease gave this runner, and what they could not. */
  get isolation(): { enforced: string[]; notEnforced: string[] } {
    const network = this.#o.network === true || this.#o.tls !== undefined;
    return {
      enforced: [
        'bubblewrap: user, pid, mount, ipc, uts namespaces',
        'read-only file system view, private /tmp',
        ...(network ? [] : ['no network']),
        ...(this.#o.dataDir === undefined
          ? []
          : [
              `its own data directory only, at ${RUNNER_DATA_DIR}${this.#o.dataDir.readOnly ? ', read-only' : ''}`,
            ]),
        ...(this.cgroup !== undefined ? ['cgroup memory', 'cgroup pids'] : []),
        ...(this.cgroup?.cpuLimited === true ? ['cgroup cpu quota'] : []),
        ...(this.tenantCgroup !== undefined && this.cgroup !== undefined
          ? [`tenant cgroup ${this.tenantCgroup.name}`]
          : []),
        `uid ${this.uid}`,
      ],
      notEnforced: [
        ...(this.cgroup === undefined ? ['memory (no cgroup)', 'process count (no cgroup)'] : []),
        ...(this.cgroup?.cpuLimited !== true ? ['cpu quota (no cpu cgroup)'] : []),
        ...(this.#o.tenantCgroup !== undefined &&
        (this.tenantCgroup === undefined || this.cgroup === undefined)
          ? ['tenant memory_mb and cpu_weight (no tenant cgroup)']
          : []),
        ...(this.tenantCgroup !== undefined &&
        this.#o.tenantCgroup?.quotas.cpuWeight !== undefined &&
        !this.tenantCgroup.cpuWeighted
          ? ['tenant cpu_weight (no cpu controller)']
          : []),
        ...(process.getuid?.() !== 0 ? ['a uid of its own (host is not root)'] : []),
        ...(network ? ['network (granted)'] : []),
      ],
    };
  }

  get alive(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** Its cgroup's accounting, found through a process in it (the cgroup's layout is cgroup.ts's business). */
  usage(): SandboxUsage | undefined {
    const pid = this.alive ? this.cgroup?.pids()[0] : undefined;
    return pid === undefined ? undefined : usageOfPid(pid);
  }

  async oomKilled(): Promise<boolean> {
    return this.cgroup?.oomKilled() === true || /heap out of memory|Allocation failed/i.test(this.stderrTail);
  }

  /**
   * When the kernel killed this runner for memory its own limit never reached: its tenant's memory_mb was the one
   * reached (the tenant's cgroup is the only limit above it).
   */
  async tenantMemoryQuota(): Promise<{ limitMb: number; tenant: string } | undefined> {
    const limitMb = this.#o.tenantCgroup?.quotas.memoryMb;
    const cgroup = this.cgroup;
    if (limitMb === undefined || this.tenantCgroup === undefined || cgroup === undefined) return undefined;
    const tenant = this.#o.tenantCgroup?.quotas.tenant ?? '';
    return cgroup.oomKilled() && !cgroup.ownLimitHit() ? { limitMb, tenant } : undefined;
  }

  /**
   * Signals bwrap's process group. bwrap dies of SIGTERM as of SIGKILL, and the sandbox's init follows it
   * (--die-with-parent), taking its whole pid namespace along.
   */
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
    // Directly too: the namespace's init, whose death ends every process in it, whatever session it made.
    if (this.initPid !== undefined && processStart(this.initPid) !== undefined) {
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {}
    }
  }

  terminate(): void {
    this.#signal('SIGTERM');
  }

  /** Kills everything this runner owns, removes its directory, and gives its uid back. Idempotent. */
  async destroy(): Promise<void> {
    this.link?.destroy();
    if (this.alive) this.kill();
    if (this.child !== undefined) await this.exited;
    await this.cgroup?.remove();
    if (this.#tenantHeld) {
      this.#tenantHeld = false;
      this.#o.tenantCgroup?.release();
    }
    // The uid may go to another sandbox only once nothing runs as it: the init's end is the namespace's end.
    await this.#initGone();
    await this.#endpoint?.close();
    // The last runner of the plugin gives the data directory's group back to the host before the gid is freed.
    const dataDir = this.#o.dataDir;
    if (dataDir !== undefined)
      this.#dataGroup?.release((gid) =>
        takeDataDirBack(dataDir.hostPath, gid, (message) =>
          this.#o.logger.warn({ pluginId: this.#o.pluginId }, message),
        ),
      );
    this.#lease?.release();
  }

  async #initGone(): Promise<void> {
    const pid = this.initPid;
    if (pid === undefined) return;
    for (let i = 0; i < 200 && processStart(pid) !== undefined; i++) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
