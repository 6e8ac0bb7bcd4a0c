import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import type { ContainerRunner } from '../src/backends/container/container-runner.js';
import { SOCKET_DIR } from '../src/backends/container/container-spec.js';
import { ensureRunnerImage } from '../src/backends/container/images.js';
import type { LazySandbox } from '../src/backends/lazy-sandbox.js';
import { usageV1, usageV2 } from '../src/backends/shared/cgroup-usage.js';
import type { SupervisedSandbox } from '../src/backends/supervisor.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import {
  type BlockCpu,
  cpuBlock,
  cpuRows,
  type EchoPeer,
  examplesConfig,
  pinTree,
  rawEcho,
  roundTrips,
} from './process.js';
import { fmt, median, printTable, type Row, threadsCpuNs } from './report.js';

const input = new Uint8Array(64).fill(120);

/** bench/raw-echo-child.ts's echo, as the image's node runs it (the package's compiled protocol is under /opt/reed). */
const ECHO_IN_CONTAINER = `
const { connect } = await import('node:net');
const { encodeFrame, FrameDecoder, FrameType } = await import('/opt/reed/dist/src/protocol/frames.js');
const socket = connect(process.argv.at(-1));
socket.setNoDelay(true);
const decoder = new FrameDecoder(2 ** 30);
socket.on('data', (chunk) => {
  for (const frame of decoder.push(chunk))
    if (frame.type === FrameType.Call)
      socket.write(encodeFrame(FrameType.Result, frame.id, { fuelConsumed: 0 }, frame.body));
});
socket.on('close', () => process.exit(0));
`;

/**
 * The raw echo's peer inside a container made like `runner` (the plugin's runner container: its image, user and
 * whole HostConfig: runtime, capabilities, seccomp, no-new-privileges, read-only root, cgroup limits, init, no
 * network), with only the socket's directory mounted instead of the sandbox directory. What this echo costs
 * beyond the one on the host is the engine's and the hardening's own, which no code of ours is in.
 */
async function containerPeer(
  docker: Docker,
  runner: Docker.Container,
  socketPath: string,
): Promise<EchoPeer> {
  chmodSync(socketPath, 0o777); // the container's user connects
  const info = await runner.inspect();
  const c = await docker.createContainer({
    Image: info.Config.Image,
    User: info.Config.User,
    WorkingDir: info.Config.WorkingDir,
    Entrypoint: [
      '/usr/local/bin/node',
      '--input-type=module',
      '-e',
      ECHO_IN_CONTAINER,
      `${SOCKET_DIR}/raw.sock`,
    ],
    Cmd: [],
    HostConfig: { ...info.HostConfig, Binds: [`${dirname(socketPath)}:${SOCKET_DIR}:ro`] },
  });
  await c.start();
  const pid = ((await c.inspect()) as { State: { Pid: number } }).State.Pid;
  return { pid, stop: async () => void (await c.remove({ force: true })) };
}

/**
 * Round trips of ours, of the raw echo inside a container made like the runner's, and of the raw echo on the host,
 * in alternating blocks with every end on one CPU: what the container costs a round trip by itself, and what our
 * call path costs beyond the same echo in the same kind of container.
 */
async function inContainerRows(
  docker: Docker,
  runner: Docker.Container,
  runnerPid: number,
  ours: () => Promise<unknown>,
  dir: string,
): Promise<Row[]> {
  const sockDir = mkdtempSync(join(dir, 'raw-in-'));
  chmodSync(sockDir, 0o755);
  const inside = await rawEcho(sockDir, (path) => containerPeer(docker, runner, path));
  const outside = await rawEcho(mkdtempSync(join(dir, 'raw-host-')));
  const seq: number[][] = [[], [], []];
  const cpu: BlockCpu[][] = [[], [], []];
  try {
    for (const pid of [process.pid, runnerPid, inside.pid, outside.pid]) pinTree(pid, '0');
    const ends: [() => Promise<unknown>, number][] = [
      [ours, runnerPid],
      [inside.call, inside.pid],
      [outside.call, outside.pid],
    ];
    for (let block = 0; block < 6; block++)
      for (const [i, [call, pid]] of ends.entries())
        seq[i]?.push(...(await cpuBlock(call, 300, pid, cpu[i] as BlockCpu[])));
  } finally {
    await inside.close();
    await outside.close();
    pinTree(process.pid, `0-${cpus().length - 1}`);
  }
  const [o, i, h] = seq.map((s) => median(s)) as [number, number, number];
  const both = (blocks: BlockCpu[] | undefined) => median((blocks ?? []).map((b) => b.host + b.peer));
  const [oc, ic, hc] = cpu.map(both) as [number, number, number];
  return [
    {
      figure: "  raw socket echo in a runc container made like the runner's (median; CPU both ends)",
      value: `${fmt(i, 1)} us; ${fmt(ic, 1)} us CPU`,
      baseline: `${fmt(h, 1)} us; ${fmt(hc, 1)} us CPU on the host`,
      ratio: `${fmt(i / h, 2)}x; ${fmt(ic / hc, 2)}x CPU`,
      target: '',
    },
    {
      figure: '  round trip (runc) against that echo in the same kind of container',
      value: `${fmt(o, 1)} us; ${fmt(oc, 1)} us CPU`,
      baseline: `${fmt(i, 1)} us; ${fmt(ic, 1)} us CPU`,
      ratio: `${fmt(o / i, 2)}x; ${fmt(oc / ic, 2)}x CPU`,
      target: '',
    },
  ];
}

/**
 * CPU a container's cgroup used so far (ms), by its id under the engine's default parent (cgroupfs driver: v1's
 * cpuacct hierarchy or v2's); NaN when not found (another driver, or the cgroup already gone). A diagnostic: it holds
 * runc's init, docker-init and the container's processes, and none of the other helpers' load.
 */
function containerCpuMs(id: string): number {
  const v1 = usageV1(undefined, `/sys/fs/cgroup/cpuacct/docker/${id}`).cpuSeconds;
  const s = v1 ?? usageV2(`/sys/fs/cgroup/docker/${id}`).cpuSeconds;
  return s === undefined ? Number.NaN : s * 1000;
}

/**
 * The machine engine's own processes: dockerd (its pid file) and the containerd it started; none when there is no
 * such file (a remote engine). Found once. Other engines on this machine (the swarm tests') are not counted.
 */
let enginePidsFound: number[] | undefined;
function enginePids(): number[] {
  if (enginePidsFound !== undefined) return enginePidsFound;
  enginePidsFound = [];
  try {
    const dockerd = Number(readFileSync('/var/run/docker.pid', 'utf8').trim());
    if (!Number.isSafeInteger(dockerd) || dockerd <= 0) return enginePidsFound;
    enginePidsFound.push(dockerd);
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        // "pid (comm) state ppid ...": comm may hold spaces, so read from its closing parenthesis.
        const [comm, rest] = [
          stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
          stat.slice(stat.lastIndexOf(')') + 2),
        ];
        if (comm === 'containerd' && Number(rest.split(' ')[1]) === dockerd) enginePidsFound.push(Number(d));
      } catch {}
    }
  } catch {}
  return enginePidsFound;
}

/** CPU (ms) of the engine's processes so far: every thread's schedstat (ns; a thread that ended is not counted). */
function engineCpuMs(): number {
  const pids = enginePids();
  return pids.length === 0 ? Number.NaN : threadsCpuNs(pids) / 1e6;
}

/** A start's wall time (ms), and the CPU (ms) its container (to its connect or Ready) and the engine used meanwhile. */
interface StartCost {
  ms: number;
  containerCpu: number;
  engineCpu: number;
}

/** The baseline: the same image, created and started through dockerode, connecting back to a socket. */
async function rawStart(docker: Docker, image: string, dir: string, runtime: string): Promise<StartCost> {
  const sockDir = mkdtempSync(join(dir, 'raw-'));
  chmodSync(sockDir, 0o777);
  const server = createServer();
  await new Promise<void>((r) => server.listen(join(sockDir, 's.sock'), r));
  chmodSync(join(sockDir, 's.sock'), 0o777);
  const connected = new Promise<void>((r) =>
    server.once('connection', (s) => {
      s.destroy();
      r();
    }),
  );
  const engine = engineCpuMs();
  const t = performance.now();
  const c = await docker.createContainer({
    Image: image,
    Entrypoint: [
      '/usr/local/bin/node',
      '-e',
      "require('net').connect('/run/reed/s.sock').on('connect', () => process.exit(0))",
    ],
    User: '65534:65534',
    HostConfig: { Runtime: runtime, NetworkMode: 'none', Binds: [`${sockDir}:/run/reed`] },
  });
  await c.start();
  await connected;
  const ms = performance.now() - t;
  // Read at once: the node exits as it connects, and its cgroup goes with the container's stop.
  const containerCpu = containerCpuMs(c.id);
  const engineCpu = engineCpuMs() - engine;
  await c.remove({ force: true });
  server.close();
  return { ms, containerCpu, engineCpu };
}

/** Median of the figures that were measured (NaN when none was). */
const measuredMedian = (values: number[]) => {
  const got = values.filter((v) => !Number.isNaN(v));
  return got.length === 0 ? Number.NaN : median(got);
};

export async function runContainerBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-container-'));
  chmodSync(dir, 0o755);
  const docker = new Docker();
  const quiet = pino({ level: 'silent' });
  const rows: Row[] = [];
  let met = true;
  try {
    const image = await ensureRunnerImage({ docker, logger: quiet });
    for (const runtime of ['runc', 'runsc'] as const) {
      const config = examplesConfig(dir);
      config.containerRuntime = runtime;
      const start = async () => {
        const t = performance.now();
        const host = await PluginHost.start({
          config,
          logger: quiet,
          services: { storage: new MemoryStorage() },
          plugins: ['example.hello'],
          forceMode: 'container',
        });
        return { host, ms: performance.now() - t };
      };
      const warm = await start(); // images built, nothing else
      // Create to ready: one container runner of the loaded plugin, started afresh, against the raw baseline.
      const sandbox = (warm.host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox;
      const running = sandbox.runner as ContainerRunner;
      const oursCost: StartCost[] = [];
      const rawCost: StartCost[] = [];
      // 9 alternating pairs for runc (the target's): with 5 the median moved 1.02-1.20x between quiet runs of the
      // same code (2026-12-01), a start's time on this engine swinging by tens of ms. runsc's row has no target.
      const pairs = runtime === 'runc' ? 9 : 5;
      for (let i = 0; i < pairs; i++) {
        rawCost.push(await rawStart(docker, image, dir, runtime));
        const runner = running.sibling();
        const engine = engineCpuMs();
        const t = performance.now();
        await runner.start();
        const ms = performance.now() - t;
        const id = (runner.container as Docker.Container | undefined)?.id;
        oursCost.push({
          ms,
          containerCpu: id === undefined ? Number.NaN : containerCpuMs(id),
          engineCpu: engineCpuMs() - engine,
        });
        await runner.destroy();
      }
      await warm.host.close();
      const ours = oursCost.map((c) => c.ms);
      const raw = rawCost.map((c) => c.ms);
      const ratio = median(ours) / median(raw);
      const target = runtime === 'runc' ? ratio <= 1.15 : undefined;
      if (target === false) met = false;
      rows.push({
        figure: `cold start, create to ready (${runtime})`,
        value: `${fmt(median(ours), 0)} ms (median of ${pairs})`,
        baseline: `${fmt(median(raw), 0)} ms raw dockerode create+start+connect`,
        ratio: `${fmt(ratio, 2)}x`,
        target: runtime === 'runc' ? '<= 1.15x' : '',
        ...(target === undefined ? {} : { met: target }),
      });
      // What the wall-clock ratio is made of, in CPU time (which the machine's other load moves less): no target.
      // The engine's figure is over each side's timed span: ours is longer, so it holds more of the engine's work
      // that trails a start (its start returns as the process runs) and of other engine clients' (measured alike,
      // attach, wait, inspect, a name and labels, and our HostConfig each cost the engine nothing seen at ~40 ms).
      for (const [label, key] of [
        ["  CPU of the container's cgroup, to ready / to its connect", 'containerCpu'],
        ['  CPU of dockerd + containerd during a start', 'engineCpu'],
      ] as const) {
        const o = measuredMedian(oursCost.map((c) => c[key]));
        const r = measuredMedian(rawCost.map((c) => c[key]));
        rows.push({
          figure: `${label} (${runtime})`,
          value: Number.isNaN(o) ? 'not measured' : `${fmt(o, 1)} ms`,
          baseline: Number.isNaN(r) ? 'not measured' : `${fmt(r, 1)} ms raw`,
          ratio: Number.isNaN(o / r) ? '' : `${fmt(o / r, 2)}x`,
          target: '',
        });
      }
      if (runtime === 'runc') {
        const cli: number[] = [];
        for (let i = 0; i < 5; i++) {
          const t = performance.now();
          spawnSync('docker', ['run', '--rm', '--entrypoint', '/usr/local/bin/node', image, '-e', '0']);
          cli.push(performance.now() - t);
        }
        rows.push({
          figure: 'cold start: docker run via the CLI (same image)',
          value: `${fmt(median(cli), 0)} ms`,
          baseline: '',
          ratio: '',
          target: '',
        });
      }
      const { host } = await start();
      const container = (
        ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox).runner as ContainerRunner
      ).container as Docker.Container;
      const runnerPid = ((await container.inspect()) as { State: { Pid: number } }).State.Pid;
      const echo = () => host.call('example.hello', 'echo', input);
      const { oursSeq, rawSeq, oursCpu, rawCpu } = await roundTrips(echo, runnerPid, dir);
      const rtRatio = median(oursSeq) / median(rawSeq);
      if (runtime === 'runc' && rtRatio > 1.3) met = false;
      rows.push({
        figure: `round trip, 64 B echo (${runtime}; both ends on one CPU)`,
        value: `${fmt(median(oursSeq), 1)} us`,
        baseline: `${fmt(median(rawSeq), 1)} us raw socket echo (process mode baseline)`,
        ratio: `${fmt(rtRatio, 2)}x`,
        target: runtime === 'runc' ? '<= 1.3x' : '',
        ...(runtime === 'runc' ? { met: rtRatio <= 1.3 } : {}),
      });
      rows.push(...cpuRows(runtime, oursCpu, rawCpu, "container's processes"));
      if (runtime === 'runc') {
        // Figures that explain the round trip's ratio, no target of their own: a failure here is reported, not fatal.
        try {
          rows.push(...(await inContainerRows(docker, container, runnerPid, echo, dir)));
        } catch (error) {
          const why = `not measured: ${(error as Error).message}`;
          rows.push({
            figure: "  raw socket echo in a container made like the runner's",
            value: why,
            baseline: '',
            ratio: '',
            target: '',
          });
        }
      }
      await new Promise((r) => setTimeout(r, 500));
      const stats = (await container.stats({ stream: false })) as {
        memory_stats?: { usage?: number; stats?: { cache?: number } };
      };
      const mem = ((stats.memory_stats?.usage ?? 0) - (stats.memory_stats?.stats?.cache ?? 0)) / 1024 / 1024;
      rows.push({
        figure: `memory per idle container (${runtime})`,
        value: `${fmt(mem, 1)} MiB`,
        baseline: '',
        ratio: '',
        target: '',
      });
      await host.close();
    }
    // A second load of the same plugin: the images exist, so nothing is built.
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => logs.push(l) });
    const config = examplesConfig(dir);
    const t = performance.now();
    const again = await PluginHost.start({
      config,
      logger,
      services: { storage: new MemoryStorage() },
      plugins: ['example.hello'],
      forceMode: 'container',
    });
    const secondMs = performance.now() - t;
    await again.close();
    const built = logs.filter((l) => l.includes('building image')).length;
    rows.push({
      figure: 'second load of the same plugin',
      value: `${fmt(secondMs, 0)} ms, ${built} image(s) built`,
      baseline: '',
      ratio: '',
      target: 'no build',
      met: built === 0,
    });
    if (built !== 0) met = false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable('container mode', rows);
  return met;
}
