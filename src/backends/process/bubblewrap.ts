import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';
import { ReedError } from '../../errors.js';
import { sharedLibraries } from '../shared/node-runtime.js';
import { RUNNER_DATA_DIR } from '../shared/runner-program.js';

/**
 * Process mode's isolation: every runner starts under bubblewrap (`bwrap`, Debian's `bubblewrap` package), which
 * gives it user, pid, mount, ipc, uts and cgroup namespaces (and a network namespace unless the plugin was granted
 * network), a root of its own with only what the runner needs bound read-only, a private size-limited /tmp, a
 * fresh /proc and a minimal /dev. Why bwrap: small, well-kept, what Flatpak sandboxes every application with, and
 * it needs no setuid bit when started as an unprivileged uid on a kernel with user namespaces (Debian's default).
 * docs/ARCHITECTURE.md ("Process mode is isolated like a container") has the whole design.
 */

/** Where the runner finds the host's socket inside its sandbox (the file alone is bound there, not its directory). */
export const INNER_SOCKET = '/run/reed/s.sock';
/** The runner's working directory inside: the private tmpfs. */
export const INNER_WORK_DIR = '/tmp';

/**
 * The bwrap binary: `$REED_BWRAP` when set (the operator's choice), else the first of the system's own
 * locations. Never looked up on the host's PATH: the sandbox tool is not something a changed PATH may choose.
 * Throws `sandbox_unavailable` when there is none: process mode never runs a plugin unconfined.
 */
export function findBubblewrap(pluginId: string): string {
  const wanted = process.env.REED_BWRAP;
  const candidates =
    wanted === undefined ? ['/usr/bin/bwrap', '/usr/local/bin/bwrap', '/bin/bwrap'] : [wanted];
  const found = candidates.find((p) => statSync(p, { throwIfNoEntry: false })?.isFile() === true);
  if (found === undefined) {
    throw new ReedError(
      'sandbox_unavailable',
      `process mode needs bubblewrap to isolate plugin "${pluginId}", and ${candidates.join(', ')} ${
        candidates.length > 1 ? 'do not exist' : 'does not exist'
      }: apt-get install bubblewrap (or set REED_BWRAP to its path), or run the plugin in container mode`,
      { pluginId },
    );
  }
  return found;
}

let runtimeFiles: string[] | undefined;

/** The node binary and every shared library it loads (read from the ELF files once per process). */
function nodeRuntimeFiles(): string[] {
  runtimeFiles ??= [process.execPath, ...sharedLibraries(process.execPath)];
  return runtimeFiles;
}

/**
 * Everything the runner may read: Node and its libraries, the package's package.json (it tells the loader these
 * are ES modules), dist/ and node_modules/. A custom runner command (tests' hostile runners) also gets its own
 * files: each absolute path in it, and for a file its directory (a script's siblings, e.g. a shared lib.mjs).
 * Not /etc, /home, /root, /var, plugin directories, or the runtime, data and cache directories.
 */
export function runnerReadOnlyPaths(packageRoot: string, command: readonly string[] | undefined): string[] {
  const paths = new Set([
    ...nodeRuntimeFiles(),
    join(packageRoot, 'package.json'),
    join(packageRoot, 'dist'),
    join(packageRoot, 'node_modules'),
  ]);
  for (const arg of command ?? []) {
    if (!isAbsolute(arg) || !existsSync(arg)) continue;
    paths.add(statSync(arg).isFile() && arg !== command?.[0] ? dirname(arg) : arg);
  }
  return [...paths];
}

export interface BubblewrapOptions {
  /** The uid and gid the runner has inside (the same as outside: the user namespace maps only those). */
  uid: number;
  gid: number;
  /** Whether the plugin keeps the host's network (granted by manifest and policy); otherwise an empty one. */
  network: boolean;
  /** The size of the private /tmp. */
  tmpfsBytes: number;
  /** The size of /dev/shm, a tmpfs of its own (shm_open, sem_open); the rest of /dev is read-only. */
  shmBytes: number;
  readOnly: string[];
  /** The host's socket, bound (the file alone) at INNER_SOCKET. Absent: the runner dials over TCP (TLS transport). */
  socket: string | undefined;
  /** The fd bwrap writes `{"child-pid": N}` to, and the fd it waits on before it starts the runner. */
  infoFd: number;
  blockFd: number;
  /**
   * The plugin's data directory (permissions.filesystem), as an fd the host opened (O_DIRECTORY|O_NOFOLLOW) and
   * passed down: bound at RUNNER_DATA_DIR, read-only for "read". By fd, not by path: bwrap runs as the runner's uid,
   * which cannot traverse `<data_dir>/files` (0700), and the directory the host checked is the one bound.
   */
  dataDir?: { fd: number; readOnly: boolean };
  /**
   * An fd bwrap reads a seccomp program from (src/seccomp-filter.ts: no tracing, no foreign ABI) and installs before
   * it starts the runner, so the runner is under it from its first instruction and needs no native code of its own
   * to install it (koffi, ~23 million instructions of a WASM runner's start).
   */
  seccompFd?: number;
}

/** bwrap's arguments up to (not including) `--` and the command. */
export function bubblewrapArgs(o: BubblewrapOptions): string[] {
  return [
    '--unshare-user',
    '--uid',
    String(o.uid),
    '--gid',
    String(o.gid),
    '--unshare-pid',
    // The runner is pid 1 of its pid namespace: no bwrap reaper between them (a process fewer per runner: ~0.1 MiB
    // PSS, docs/ARCHITECTURE.md "The runner's memory"). The namespace dies with the runner; an orphan of a process a
    // native plugin forked stays a zombie until then, counted against the cgroup's pids limit.
    '--as-pid-1',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(o.network ? [] : ['--unshare-net']),
    // SIGKILL down the chain (bwrap, then the runner: the namespace's init) when the host dies; a pid namespace dies
    // with its init.
    '--die-with-parent',
    // No controlling terminal to push input into (TIOCSTI), and no nested user namespaces to regain capabilities in.
    '--new-session',
    '--disable-userns',
    '--hostname',
    'reed-sandbox',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    // --dev's /dev is a tmpfs with no size limit, writable by the runner, /dev/shm a directory in it: /dev/shm gets
    // a bounded tmpfs of its own, and /dev is made read-only below (device nodes stay usable: a read-only mount
    // does not stop writes to a device; the remount is not recursive, so /dev/shm and /dev/pts stay as they are).
    '--size',
    String(o.shmBytes),
    '--tmpfs',
    '/dev/shm',
    // --size applies to the --tmpfs right after it.
    '--size',
    String(o.tmpfsBytes),
    '--tmpfs',
    INNER_WORK_DIR,
    // After the tmpfs, so that a package installed under /tmp is not hidden by it.
    ...o.readOnly.flatMap((p) => ['--ro-bind', p, p]),
    ...(o.socket === undefined ? [] : ['--ro-bind', o.socket, INNER_SOCKET]),
    ...(o.dataDir === undefined
      ? []
      : [o.dataDir.readOnly ? '--ro-bind-fd' : '--bind-fd', String(o.dataDir.fd), RUNNER_DATA_DIR]),
    '--remount-ro',
    '/dev',
    // A root of nothing but the above: make it read-only too (the tmpfs mounts and the data directory's bind stay as
    // they are: the remount is not recursive).
    '--remount-ro',
    '/',
    '--chdir',
    INNER_WORK_DIR,
    ...(o.seccompFd === undefined ? [] : ['--seccomp', String(o.seccompFd)]),
    '--info-fd',
    String(o.infoFd),
    '--block-fd',
    String(o.blockFd),
  ];
}

/**
 * The host pid of the sandbox's init (bwrap's `child-pid`: the runner itself, --as-pid-1), from its info fd;
 * undefined if bwrap exited first.
 */
export function readChildPid(info: Readable): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const done = (pid: number | undefined) => {
      info.removeAllListeners('data');
      info.destroy();
      resolve(pid);
    };
    info.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.length > 4096) return done(undefined); // bwrap writes a few dozen bytes
      const m = /"child-pid":\s*(\d+)/.exec(text);
      if (m !== null && text.includes('}')) done(Number(m[1]));
    });
    info.once('end', () => done(undefined));
    info.once('error', () => done(undefined));
  });
}
