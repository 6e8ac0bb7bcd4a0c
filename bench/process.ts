import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { LazySandbox } from '../src/backends/lazy-sandbox.js';
import {
  bubblewrapArgs,
  findBubblewrap,
  INNER_SOCKET,
  INNER_WORK_DIR,
  readChildPid,
  runnerReadOnlyPaths,
} from '../src/backends/process/bubblewrap.js';
import { cgroupName, RunnerCgroup } from '../src/backends/process/cgroup.js';
import { defaultRunnerCommand } from '../src/backends/process/runner-command.js';
import {
  RUNNER_BASE_ENV,
  type RunnerProcess,
  runnerCgroupLimits,
} from '../src/backends/process/runner-process.js';
import { linkBounds } from '../src/backends/shared/runner-endpoint.js';
import { RunnerLink } from '../src/backends/shared/runner-link.js';
import { PACKAGE_ROOT } from '../src/backends/shared/runner-program.js';
import { newSession } from '../src/backends/shared/session.js';
import { DEFAULT_RUNNER_UIDS } from '../src/backends/shared/uid-pool.js';
import type { SupervisedSandbox } from '../src/backends/supervisor.js';
import { type HostConfig, loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { DEFAULT_LIMITS } from '../src/manifest/limits.js';
import { encodeFrame, FrameDecoder, FrameType } from '../src/protocol/frames.js';
import type { PluginSpec } from '../src/protocol/messages.js';
import type { HostApi } from '../src/runtime/host-api.js';
import { filterBytes, tracingFilter } from '../src/seccomp-filter.js';
import { fmt, median, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const input = new Uint8Array(64).fill(120);
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] as number;

/** A raw echo's peer process (`pid`: what its CPU time is read from, with its descendants). */
export interface EchoPeer {
  pid: number;
  stop: () => void | Promise<void>;
}

/** The raw echo's usual peer: bench/raw-echo-child.js, a second Node process on this machine. */
function hostPeer(socketPath: string): EchoPeer {
  const child = spawn(process.execPath, [join(REPO, 'dist/bench/raw-echo-child.js'), socketPath], {
    stdio: 'ignore',
  });
  return { pid: child.pid as number, stop: () => void child.kill() };
}

/**
 * The baseline: a second Node process echoing frames over a Unix socket, same framing, nothing else. `startPeer`
 * starts that process elsewhere (bench/container.ts: inside a container made like a runner's) given the socket.
 */
export async function rawEcho(
  dir: string,
  startPeer: (socketPath: string) => EchoPeer | Promise<EchoPeer> = hostPeer,
): Promise<{ call: () => Promise<void>; close: () => Promise<void>; pid: number }> {
  const path = join(dir, 'raw.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const connected = new Promise<Socket>((r) => server.once('connection', r));
  const peer = await startPeer(path);
  let timer: NodeJS.Timeout | undefined;
  const socket = await Promise.race([
    connected,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the raw echo peer did not connect within 60 s')), 60_000);
    }),
  ]).catch(async (error: unknown) => {
    server.close();
    await peer.stop();
    throw error;
  });
  clearTimeout(timer);
  socket.setNoDelay(true);
  const decoder = new FrameDecoder(1 << 30);
  const pending = new Map<number, () => void>();
  socket.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) pending.get(f.id)?.();
  });
  let next = 1;
  return {
    call: () =>
      new Promise<void>((resolve) => {
        const id = next++;
        pending.set(id, () => {
          pending.delete(id);
          resolve();
        });
        socket.write(encodeFrame(FrameType.Call, id, { fn: 'echo' }, input));
      }),
    close: async () => {
      socket.destroy();
      server.close();
      await peer.stop();
    },
    pid: peer.pid,
  };
}

export async function sequential(call: () => Promise<unknown>, n: number, warmUp = 500): Promise<number[]> {
  for (let i = 0; i < warmUp; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    times.push((performance.now() - t) * 1000);
  }
  return times;
}

/** A host configuration over the example plugins, with its runtime and cache directories under `dir`. */
export function examplesConfig(dir: string): HostConfig {
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
  });
  config.runtimeDir = join(dir, 'run');
  config.cacheDir = join(dir, 'cache');
  return config;
}

/** CPU time per call of one block, on each end: this process (the host's side) and the peer's process tree. */
export interface BlockCpu {
  host: number;
  peer: number;
}

/**
 * Round trips through a sandbox (process or container mode) against the raw socket echo, in alternating blocks,
 * with both ends of each on one CPU (`runnerPid`: the runner, or the container's init, and their descendants).
 * Unpinned, this VM's scheduler puts the two ends on one core or on two, and that alone moves the raw baseline
 * between ~30 and ~75 us from run to run; pinned, both are measured alike. Each block's CPU time per call is
 * taken on both ends too (`oursCpu`, `rawCpu`): on a shared machine the wall-clock measures the other processes
 * as much as these two, while CPU time says what each end spends on a call.
 */
export async function roundTrips(
  ours: () => Promise<unknown>,
  runnerPid: number,
  dir: string,
): Promise<{ oursSeq: number[]; rawSeq: number[]; oursCpu: BlockCpu[]; rawCpu: BlockCpu[] }> {
  const all = `0-${cpus().length - 1}`;
  // Let what the cold starts left (exiting runners, the engine's clean-up) settle before anything is timed.
  await new Promise((r) => setTimeout(r, 3_000));
  pinTree(process.pid, '0');
  pinTree(runnerPid, '0');
  const raw = await rawEcho(dir); // its child inherits this process's CPU
  try {
    const oursSeq: number[] = [];
    const rawSeq: number[] = [];
    const oursCpu: BlockCpu[] = [];
    const rawCpu: BlockCpu[] = [];
    for (let block = 0; block < 10; block++) {
      oursSeq.push(...(await cpuBlock(ours, 300, runnerPid, oursCpu)));
      rawSeq.push(...(await cpuBlock(raw.call, 300, raw.pid, rawCpu)));
    }
    return { oursSeq, rawSeq, oursCpu, rawCpu };
  } finally {
    await raw.close();
    pinTree(process.pid, all);
  }
}

/** `sequential`'s timed calls, with the CPU time both ends spent on them (per call, in us) pushed to `cpu`. */
export async function cpuBlock(
  call: () => Promise<unknown>,
  n: number,
  peerPid: number,
  cpu: BlockCpu[],
): Promise<number[]> {
  for (let i = 0; i < 500; i++) await call();
  const peer = treeCpuUs(peerPid);
  const host = process.cpuUsage();
  const times = await sequential(call, n, 0);
  const hostUsed = process.cpuUsage(host);
  cpu.push({ host: (hostUsed.user + hostUsed.system) / n, peer: (treeCpuUs(peerPid) - peer) / n });
  return times;
}

/** CPU time (us) a process and its descendants have run so far, all threads (the scheduler's own count, in ns). */
function treeCpuUs(pid: number): number {
  let ns = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0; // gone
  }
  for (const task of tasks) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' '))
        if (child !== '' && Number(child) !== pid) ns += treeCpuUs(Number(child)) * 1000;
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1000;
}

/** The median block's CPU per call on each end, and the two ends together. */
function medianCpu(blocks: BlockCpu[]): { host: number; peer: number; both: number } {
  return {
    host: median(blocks.map((b) => b.host)),
    peer: median(blocks.map((b) => b.peer)),
    both: median(blocks.map((b) => b.host + b.peer)),
  };
}

/** Rows for the CPU time per round trip, ours against the raw echo's (`peer`: what the runner is called). */
export function cpuRows(label: string, ours: BlockCpu[], raw: BlockCpu[], peer: string): Row[] {
  const o = medianCpu(ours);
  const r = medianCpu(raw);
  return [
    {
      figure: `CPU per round trip, both ends (${label}; median block)`,
      value: `${fmt(o.both, 1)} us`,
      baseline: `${fmt(r.both, 1)} us raw socket echo`,
      ratio: `${fmt(o.both / r.both, 2)}x`,
      target: '',
    },
    {
      figure: `  of which the host's process / the ${peer}`,
      value: `${fmt(o.host, 1)} / ${fmt(o.peer, 1)} us`,
      baseline: `${fmt(r.host, 1)} / ${fmt(r.peer, 1)} us`,
      ratio: `${fmt(o.host / r.host, 2)}x / ${fmt(o.peer / r.peer, 2)}x`,
      target: '',
    },
  ];
}

/**
 * The raw echo's peer in a runner's whole sandbox, without our program: bubblewrap with the runner's arguments
 * (namespaces, a runner uid, the read-only view, the seccomp filter), a cgroup made as a runner's (joined before the
 * peer starts, as a runner's init does) and the runner's Node flags (V8's, the permission model). With `cgroupEchoRows`'
 * peer and ours it splits the round trip's gap into the sandbox's share and our program's. Root only (the uid).
 */
function sandboxedPeer(cgroup: RunnerCgroup): (socketPath: string) => Promise<EchoPeer> {
  return async (socketPath) => {
    chmodSync(dirname(socketPath), 0o755);
    chmodSync(socketPath, 0o777); // the peer's uid connects to it
    const uid = DEFAULT_RUNNER_UIDS.end - 1; // beside the cold start's; the bench's sandboxes lease from the start
    const seccomp = filterBytes(tracingFilter() ?? []);
    const args = bubblewrapArgs({
      uid,
      gid: uid,
      network: false,
      tmpfsBytes: DEFAULT_LIMITS.tmpfsMb * 1024 * 1024,
      shmBytes: DEFAULT_LIMITS.tmpfsMb * 1024 * 1024,
      readOnly: runnerReadOnlyPaths(PACKAGE_ROOT, undefined),
      socket: socketPath,
      infoFd: 4,
      blockFd: 5,
      ...(seccomp.length === 0 ? {} : { seccompFd: 6 }),
    });
    // The runner's command with the raw echo as its program.
    const command = defaultRunnerCommand(INNER_WORK_DIR, DEFAULT_LIMITS).slice(0, -1);
    const child = spawn(
      findBubblewrap('bench'),
      [...args, '--', ...command, join(REPO, 'dist/bench/raw-echo-child.js'), INNER_SOCKET],
      {
        cwd: '/',
        env: RUNNER_BASE_ENV,
        detached: true,
        stdio: [
          'ignore',
          'ignore',
          'ignore',
          'ignore',
          'pipe',
          'pipe',
          seccomp.length === 0 ? 'ignore' : 'pipe',
        ],
        uid,
        gid: uid,
      },
    );
    const stdio = child.stdio as unknown as (Readable & Writable)[];
    stdio[6]?.end(seccomp);
    const init = await readChildPid(stdio[4] as Readable);
    await cgroup.add(child.pid as number, ...(init === undefined ? [] : [init]));
    stdio[5]?.end('1');
    return { pid: child.pid as number, stop: () => void child.kill('SIGKILL') };
  };
}

/**
 * What a runner's cgroups cost a round trip by themselves, without our code: the raw echo twice, its usual peer
 * and a second one moved into a cgroup made as a runner's is (RunnerCgroup with a default plugin's limits: memory,
 * pids, and the CPU quota in the cpu controller), in alternating blocks on one CPU; and, as root, a third peer in a
 * runner's whole sandbox (`sandboxedPeer`). Undefined where the host cannot make cgroups (not root). No target: the
 * round trip's ratio is against the peer on the host.
 */
async function cgroupEchoRows(dir: string): Promise<Row[] | undefined> {
  const limits = runnerCgroupLimits(DEFAULT_LIMITS);
  const cgroup = RunnerCgroup.create(cgroupName(newSession(), 'rawecho'), limits);
  if (cgroup === undefined) return undefined;
  const sandboxCgroup =
    process.getuid?.() === 0 ? RunnerCgroup.create(cgroupName(newSession(), 'rawsbx'), limits) : undefined;
  const all = `0-${cpus().length - 1}`;
  pinTree(process.pid, '0');
  const plain = await rawEcho(mkdtempSync(join(dir, 'raw-plain-')));
  const inside = await rawEcho(mkdtempSync(join(dir, 'raw-cgroup-')));
  const sandboxed =
    sandboxCgroup === undefined
      ? undefined
      : await rawEcho(mkdtempSync(join(dir, 'raw-sandbox-')), sandboxedPeer(sandboxCgroup));
  try {
    await cgroup.add(inside.pid);
    if (sandboxed !== undefined) pinTree(sandboxed.pid, '0');
    const plainSeq: number[] = [];
    const insideSeq: number[] = [];
    const sandboxedSeq: number[] = [];
    const plainCpu: BlockCpu[] = [];
    const insideCpu: BlockCpu[] = [];
    const sandboxedCpu: BlockCpu[] = [];
    for (let block = 0; block < 10; block++) {
      plainSeq.push(...(await cpuBlock(plain.call, 300, plain.pid, plainCpu)));
      insideSeq.push(...(await cpuBlock(inside.call, 300, inside.pid, insideCpu)));
      if (sandboxed !== undefined)
        sandboxedSeq.push(...(await cpuBlock(sandboxed.call, 300, sandboxed.pid, sandboxedCpu)));
    }
    const p = medianCpu(plainCpu);
    const peerRows = (figure: string, seq: number[], cpu: BlockCpu[]): Row[] => {
      const i = medianCpu(cpu);
      return [
        {
          figure,
          value: `${fmt(median(seq), 1)} us`,
          baseline: `${fmt(median(plainSeq), 1)} us peer on the host`,
          ratio: `${fmt(median(seq) / median(plainSeq), 2)}x`,
          target: '',
        },
        {
          figure: "  CPU per round trip, both ends (host's process / peer)",
          value: `${fmt(i.both, 1)} (${fmt(i.host, 1)} / ${fmt(i.peer, 1)}) us`,
          baseline: `${fmt(p.both, 1)} (${fmt(p.host, 1)} / ${fmt(p.peer, 1)}) us`,
          ratio: `${fmt(i.both / p.both, 2)}x`,
          target: '',
        },
      ];
    };
    return [
      ...peerRows("reference: raw echo with its peer in a runner's cgroups (median)", insideSeq, insideCpu),
      ...(sandboxed === undefined
        ? []
        : peerRows(
            "reference: raw echo with its peer in a runner's whole sandbox (bwrap, seccomp, uid, cgroups, Node flags)",
            sandboxedSeq,
            sandboxedCpu,
          )),
    ];
  } finally {
    await plain.close();
    await inside.close();
    await sandboxed?.close();
    await cgroup.remove();
    await sandboxCgroup?.remove();
    pinTree(process.pid, all);
  }
}

/**
 * The host's end of the protocol alone, against the raw echo's peer program: RunnerConnection and RunnerLink (the
 * handshake done, then `request` per call, as a sandbox's call makes it) over a Unix socket to
 * bench/link-echo-child.js, which is raw-echo-child.js plus its Hello and Ready. Alternating blocks with the raw echo
 * on one CPU, as the round trip's. No target: it tells whether the host's code or its peer makes the host's share of
 * the round trip's gap (docs/BENCHMARKS.md, 2026-12-01, session 12: in a scratch harness's longer runs the host's CPU
 * was 1.00-1.04x the raw client's against the same peer, while against our runner it was 1.2-1.8x).
 */
async function linkEchoRows(dir: string): Promise<Row[]> {
  const pluginId = 'bench.link-echo';
  const secret = 'bench-link-echo-secret';
  const all = `0-${cpus().length - 1}`;
  pinTree(process.pid, '0'); // before the peer starts: born on that CPU, as the raw echo's peer is
  const socketPath = join(mkdtempSync(join(dir, 'link-')), 'link.sock');
  const server = createServer();
  await new Promise<void>((r) => server.listen(socketPath, r));
  const connected = new Promise<Socket>((r) => server.once('connection', r));
  const child = spawn(
    process.execPath,
    [join(REPO, 'dist/bench/link-echo-child.js'), socketPath, pluginId, secret],
    { stdio: 'ignore' },
  );
  let timer: NodeJS.Timeout | undefined;
  const socket = await Promise.race([
    connected,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the link echo peer did not connect within 60 s')), 60_000);
    }),
  ]).catch((error: unknown) => {
    server.close();
    child.kill();
    pinTree(process.pid, all);
    throw error;
  });
  clearTimeout(timer);
  const raw = await rawEcho(mkdtempSync(join(dir, 'raw-link-')));
  const runnerLink = new RunnerLink(socket, {
    pluginId,
    secret,
    ...linkBounds(DEFAULT_LIMITS), // as a runner's link is bounded
    handshakeTimeoutMs: 10_000,
    logger: pino({ level: 'silent' }),
    host: {} as HostApi, // the peer makes no host calls
  });
  try {
    await runnerLink.handshake();
    await runnerLink.welcome({ id: pluginId } as PluginSpec, new Uint8Array(0));
    const call = () =>
      new Promise<void>((resolve, reject) =>
        runnerLink.request('echo', input, undefined, { result: () => resolve(), error: reject }),
      );
    const linkSeq: number[] = [];
    const rawSeq: number[] = [];
    const linkCpu: BlockCpu[] = [];
    const rawCpu: BlockCpu[] = [];
    for (let block = 0; block < 10; block++) {
      linkSeq.push(...(await cpuBlock(call, 300, child.pid as number, linkCpu)));
      rawSeq.push(...(await cpuBlock(raw.call, 300, raw.pid, rawCpu)));
    }
    const l = medianCpu(linkCpu);
    const r = medianCpu(rawCpu);
    return [
      {
        figure: "reference: the host's RunnerConnection and RunnerLink against the raw echo's peer (median)",
        value: `${fmt(median(linkSeq), 1)} us`,
        baseline: `${fmt(median(rawSeq), 1)} us raw socket echo`,
        ratio: `${fmt(median(linkSeq) / median(rawSeq), 2)}x`,
        target: '',
      },
      {
        figure: "  CPU per round trip, both ends (host's process / peer)",
        value: `${fmt(l.both, 1)} (${fmt(l.host, 1)} / ${fmt(l.peer, 1)}) us`,
        baseline: `${fmt(r.both, 1)} (${fmt(r.host, 1)} / ${fmt(r.peer, 1)}) us`,
        ratio: `${fmt(l.both / r.both, 2)}x (host ${fmt(l.host / r.host, 2)}x)`,
        target: '',
      },
    ];
  } finally {
    runnerLink.destroy();
    server.close();
    child.kill();
    await raw.close();
    pinTree(process.pid, all);
  }
}

/** Sets the CPU affinity of a process, all its threads and all its descendants (taskset). */
export function pinTree(pid: number, cpuList: string): void {
  spawnSync('taskset', ['-acp', cpuList, String(pid)], { stdio: 'ignore' });
  let children: string[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`))
      children = children.concat(readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' '));
  } catch {
    return; // gone
  }
  for (const child of children.filter(Boolean)) if (Number(child) !== pid) pinTree(Number(child), cpuList);
}

async function inFlight(call: () => Promise<unknown>, total: number, width = 64): Promise<number> {
  let started = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (started < total) {
        started++;
        await call();
      }
    }),
  );
  return total / ((performance.now() - t) / 1000);
}

/** Memory of a runner: the process spawned and all its descendants (bwrap, the sandbox's init, the runner). */
function memoryOf(pid: number): { rss: number; pss: number } {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? 0);
  const total = { rss: kb('Rss') / 1024, pss: kb('Pss') / 1024 };
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
      .split(' ')
      .filter(Boolean)) {
      const sub = memoryOf(Number(child));
      total.rss += sub.rss;
      total.pss += sub.pss;
    }
  }
  return total;
}

export async function runProcessBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-process-'));
  chmodSync(dir, 0o755); // runners (as nobody, under root) pass through it to their sockets
  try {
    const config = examplesConfig(dir);
    const quiet = pino({ level: 'silent' });
    const startHost = () =>
      PluginHost.start({
        config,
        logger: quiet,
        services: { storage: new MemoryStorage() },
        plugins: ['example.hello'],
        forceMode: 'process',
      });

    // Cold start: spawn to ready, against `node -e 0` under the same isolation (bubblewrap with the runner's
    // namespaces and read-only view, as a runner uid). What the isolation itself costs is measured against the
    // code before it (README, Benchmarks): beside a bare `node -e 0` the difference was not steady from run to run.
    // Ours is one runner of the loaded plugin started afresh (its uid lease, cgroup, socket, bubblewrap, the
    // runner's start, the handshake, the plugin sent and loaded, Ready), as bench/container.ts times a container:
    // a whole host's start (discovery, the start-up sweeps) is not the sandbox's.
    const cold: number[] = [];
    const isolated: number[] = [];
    /** `node -e 0` through the runner's whole sandbox, and bare (issue 10's allowance, below). */
    const inSandbox: number[] = [];
    const bare: number[] = [];
    const bwrap = findBubblewrap('bench');
    const uid = DEFAULT_RUNNER_UIDS.end; // the range's last uid: the bench's own sandboxes lease from the start
    const isolation = [
      ...[
        '--unshare-user',
        '--uid',
        String(uid),
        '--gid',
        String(uid),
        '--unshare-pid',
        '--as-pid-1',
        '--unshare-ipc',
      ],
      ...['--unshare-uts', '--unshare-cgroup-try', '--unshare-net', '--die-with-parent', '--new-session'],
      ...['--disable-userns', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/dev/shm'],
      ...runnerReadOnlyPaths(PACKAGE_ROOT, undefined).flatMap((p) => ['--ro-bind', p, p]),
      ...['--remount-ro', '/', '--chdir', '/tmp', process.execPath, '-e', '0'],
    ];
    const host = await startHost();
    const ours = () => host.call('example.hello', 'echo', input);
    const pid = ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox).runner
      ?.pid as number;
    const running = ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox)
      .runner as RunnerProcess;
    for (let i = 0; i < 7; i++) {
      let t = performance.now();
      // The runner's own environment, not the bench's: a NODE_EXTRA_CA_CERTS inherited from the machine (set here
      // and in CI) makes Node load the CA store at start, 20-40 ms the runner never pays.
      spawnSync(bwrap, isolation, { uid, gid: uid, env: RUNNER_BASE_ENV });
      isolated.push(performance.now() - t);
      const runner = running.sibling();
      t = performance.now();
      await runner.start();
      cold.push(performance.now() - t);
      await runner.destroy();
      // Issue 10 lets the cold start grow by the isolation's cost: what that is, measured here. The same `node -e 0`
      // through the runner's whole sandbox (uid lease, cgroup, starter, bubblewrap, seccomp, the unblock), timed to
      // its exit as the host sees it (it never connects, so its start fails then), against it bare (the runner's
      // uid and environment, spawned and awaited the same way). Diagnostic rows: the judged row stays as it was.
      const sandboxed = running.sibling([process.execPath, '-e', '0', '--']);
      t = performance.now();
      await sandboxed.start().catch(() => {});
      await sandboxed.exited;
      inSandbox.push(performance.now() - t);
      await sandboxed.destroy();
      t = performance.now();
      await new Promise((resolve) =>
        spawn(process.execPath, ['-e', '0'], { uid, gid: uid, env: RUNNER_BASE_ENV, stdio: 'ignore' }).once(
          'exit',
          resolve,
        ),
      );
      bare.push(performance.now() - t);
    }
    const isolationMs = median(inSandbox) - median(bare);
    const { oursSeq, rawSeq, oursCpu, rawCpu } = await roundTrips(ours, pid, dir);
    const cgroupEcho = await cgroupEchoRows(dir);
    const linkEcho = await linkEchoRows(dir);
    const raw = await rawEcho(dir);
    const oursPar = await inFlight(ours, 50_000);
    const rawPar = await inFlight(raw.call, 50_000);
    await raw.close();
    await new Promise((r) => setTimeout(r, 500));
    const mem = memoryOf(pid);
    await host.close();

    const seqRatio = median(oursSeq) / median(rawSeq);
    const parRatio = oursPar / rawPar;
    const coldRatio = median(cold) / median(isolated);
    const rows: Row[] = [
      {
        figure: 'round trip, 64 B echo, sequential (median; both ends on one CPU)',
        value: `${fmt(median(oursSeq), 1)} us`,
        baseline: `${fmt(median(rawSeq), 1)} us raw socket echo`,
        ratio: `${fmt(seqRatio, 2)}x`,
        target: '<= 1.3x',
        met: seqRatio <= 1.3,
      },
      {
        figure: 'round trip, sequential (p99)',
        value: `${fmt(percentile(oursSeq, 0.99), 1)} us`,
        baseline: `${fmt(percentile(rawSeq, 0.99), 1)} us`,
        ratio: `${fmt(percentile(oursSeq, 0.99) / percentile(rawSeq, 0.99), 2)}x`,
        target: '',
      },
      ...cpuRows('process mode', oursCpu, rawCpu, 'runner (bwrap and its sandbox)'),
      ...(cgroupEcho ?? []),
      ...linkEcho,
      {
        figure: 'throughput, 64 calls in flight',
        value: `${fmt(oursPar)}/s`,
        baseline: `${fmt(rawPar)}/s raw`,
        ratio: `${fmt(parRatio, 2)}x`,
        target: '>= 0.5x',
        met: parRatio >= 0.5,
      },
      {
        figure: 'cold start, spawn to ready (isolated)',
        value: `${fmt(median(cold), 1)} ms`,
        baseline: `${fmt(median(isolated), 1)} ms node -e 0 under bwrap`,
        ratio: `${fmt(coldRatio, 2)}x`,
        target: '<= 1.2x',
        met: coldRatio <= 1.2,
      },
      {
        figure: "  the isolation's cost at start: node -e 0 through the runner's sandbox, less bare",
        value: `${fmt(isolationMs, 1)} ms`,
        baseline: `${fmt(median(inSandbox), 1)} ms sandboxed, ${fmt(median(bare), 1)} ms bare`,
        ratio: '',
        target: '',
      },
      {
        figure: "  cold start less the isolation's cost, against bare node -e 0 (issue 10's allowance)",
        value: `${fmt(median(cold) - isolationMs, 1)} ms`,
        baseline: `${fmt(median(bare), 1)} ms node -e 0`,
        ratio: `${fmt((median(cold) - isolationMs) / median(bare), 2)}x`,
        target: '',
      },
      {
        figure: 'memory per idle runner',
        value: `RSS ${fmt(mem.rss, 1)} MiB, PSS ${fmt(mem.pss, 1)} MiB`,
        baseline: '',
        ratio: '',
        target: '',
      },
    ];
    printTable('process mode', rows);
    return rows.every((r) => r.met !== false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
