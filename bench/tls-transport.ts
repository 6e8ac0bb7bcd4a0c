// `npm run bench -- tls-transport` (issue 18, part 2): a 64-byte call's round trip through process mode over the
// TLS transport (PluginHost -> supervisor -> RunnerLink -> TLS over TCP on 127.0.0.1 -> the sandbox-runner under
// bubblewrap -> the plugin -> back), against a raw TCP+TLS echo between the same two ends: this process, listening
// with the same transport (TlsRunnerTransport, the same certificate), and a Node child dialing it with the runner's
// own dial (sandbox-runner/tls-dial.ts) that echoes frames. Both are measured in one run, in alternating blocks,
// with both ends of each pinned to one CPU (as bench/process.ts does). Beside wall-clock time it prints the CPU time
// each round trip costs at each end (the kernel's per-thread run time, /proc/PID/task/TID/schedstat), which a loaded
// machine does not inflate the way it does wall-clock time.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { LazySandbox } from '../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../src/backends/supervisor.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { ORCHESTRATOR_SERVERNAME, OrchestratorCa } from '../src/pki/orchestrator-ca.js';
import { encodeFrame, FrameDecoder, FrameType } from '../src/protocol/frames.js';
import { listenTls, runnerTlsEnvironment } from '../src/transport/tls-transport.js';
import { examplesConfig, rawEcho, sequential } from './process.js';
import { fmt, median, printTable, type Row, threadsCpuNs } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const input = new Uint8Array(64).fill(120);
const BLOCKS = 10;
const CALLS_PER_BLOCK = 300;
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] as number;

/** The raw echo: our TLS listener, and a child that dials it as the runner does and echoes frames. */
async function rawTlsEcho(): Promise<{ call: () => Promise<void>; pid: number; close: () => Promise<void> }> {
  const ca = await OrchestratorCa.create();
  const credentials = await ca.issueServer({ ipAddresses: ['127.0.0.1'] });
  const transport = await listenTls({
    credentials,
    caPem: ca.certPem,
    servername: ORCHESTRATOR_SERVERNAME,
    handshakeTimeoutMs: 30_000,
    refused: () => {},
  });
  const material = transport.runnerMaterial();
  const child = spawn(process.execPath, [join(REPO, 'dist/bench/tls-echo-child.js'), material.address], {
    stdio: 'ignore',
    env: { ...runnerTlsEnvironment(material), PATH: process.env.PATH ?? '' },
  });
  const socket = await transport.accept();
  const decoder = new FrameDecoder(1 << 30);
  const pending = new Map<number, () => void>();
  socket.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) pending.get(f.id)?.();
  });
  let next = 1;
  return {
    pid: child.pid as number,
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
      child.kill();
      await transport.close();
    },
  };
}

/** A process and all its descendants (bwrap, the sandbox's init, the runner). */
function tree(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    out.push(pid);
    try {
      for (const task of readdirSync(`/proc/${pid}/task`))
        for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' '))
          if (child !== '' && Number(child) !== pid) queue.push(Number(child));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function pin(pids: number[], cpuList: string): void {
  for (const pid of pids) spawnSync('taskset', ['-acp', cpuList, String(pid)], { stdio: 'ignore' });
}

interface Side {
  wall: number[];
  hostNs: number;
  peerNs: number;
  calls: number;
}

async function block(call: () => Promise<unknown>, peer: number[], side: Side): Promise<void> {
  const host0 = threadsCpuNs([process.pid]);
  const peer0 = threadsCpuNs(peer);
  side.wall.push(...(await sequential(call, CALLS_PER_BLOCK)));
  side.hostNs += threadsCpuNs([process.pid]) - host0;
  side.peerNs += threadsCpuNs(peer) - peer0;
  side.calls += CALLS_PER_BLOCK + 500; // sequential's 500 warm-up calls run inside the CPU window too
}

export async function runTlsTransportBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-tls-'));
  chmodSync(dir, 0o755); // runners (as a runner uid, under root) pass through it
  const load = loadavg()[0] ?? 0;
  const host = await PluginHost.start({
    config: examplesConfig(dir),
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: ['example.hello'],
    forceMode: 'process',
    runnerTransport: 'tls',
  });
  const raw = await rawTlsEcho();
  // For reference, in the same run: the default Unix socket transport against the raw Unix socket echo
  // (bench/process.ts's pair), so the lead can tell what TLS adds to the ratio from what the machine does to it.
  const unixConfig = examplesConfig(dir);
  unixConfig.runtimeDir = join(dir, 'run-unix');
  const unixHost = await PluginHost.start({
    config: unixConfig,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: ['example.hello'],
    forceMode: 'process',
  });
  const rawUnix = await rawEcho(dir);
  try {
    const ours = () => host.call('example.hello', 'echo', input);
    const oursUnix = () => unixHost.call('example.hello', 'echo', input);
    await ours();
    await oursUnix();
    const runnerOf = (h: PluginHost) =>
      tree(((h.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox).runner?.pid as number);
    const runnerTree = runnerOf(host);
    const unixTree = runnerOf(unixHost);
    const rawUnixPid = tree(process.pid).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('raw-echo-child.js');
      } catch {
        return false;
      }
    });
    const all = `0-${cpus().length - 1}`;
    await new Promise((r) => setTimeout(r, 2_000)); // what the start left (the CA, the spawn) settles
    pin([process.pid, ...runnerTree, ...unixTree, raw.pid, ...rawUnixPid], '0');
    const o: Side = { wall: [], hostNs: 0, peerNs: 0, calls: 0 };
    const r: Side = { wall: [], hostNs: 0, peerNs: 0, calls: 0 };
    const ou: Side = { wall: [], hostNs: 0, peerNs: 0, calls: 0 };
    const ru: Side = { wall: [], hostNs: 0, peerNs: 0, calls: 0 };
    try {
      for (let i = 0; i < BLOCKS; i++) {
        await block(ours, runnerTree, o);
        await block(raw.call, [raw.pid], r);
        await block(oursUnix, unixTree, ou);
        await block(rawUnix.call, rawUnixPid, ru);
      }
    } finally {
      pin([process.pid], all);
    }
    const unixRatio = median(ou.wall) / median(ru.wall);
    const seqRatio = median(o.wall) / median(r.wall);
    const us = (ns: number, calls: number) => ns / calls / 1000;
    const oHost = us(o.hostNs, o.calls);
    const rHost = us(r.hostNs, r.calls);
    const oPeer = us(o.peerNs, o.calls);
    const rPeer = us(r.peerNs, r.calls);
    const rows: Row[] = [
      {
        figure: 'round trip, 64 B echo over TLS, sequential (median; both ends on one CPU)',
        value: `${fmt(median(o.wall), 1)} us`,
        baseline: `${fmt(median(r.wall), 1)} us raw TCP+TLS echo`,
        ratio: `${fmt(seqRatio, 2)}x`,
        target: '<= 1.3x',
        met: seqRatio <= 1.3,
      },
      {
        figure: 'round trip over TLS, sequential (p99)',
        value: `${fmt(percentile(o.wall, 0.99), 1)} us`,
        baseline: `${fmt(percentile(r.wall, 0.99), 1)} us`,
        ratio: `${fmt(percentile(o.wall, 0.99) / percentile(r.wall, 0.99), 2)}x`,
        target: '',
      },
      {
        figure: 'CPU per round trip, host end (this process)',
        value: `${fmt(oHost, 1)} us`,
        baseline: `${fmt(rHost, 1)} us`,
        ratio: `${fmt(oHost / rHost, 2)}x`,
        target: '',
      },
      {
        figure: 'CPU per round trip, runner end (bwrap, init, runner / echo child)',
        value: `${fmt(oPeer, 1)} us`,
        baseline: `${fmt(rPeer, 1)} us`,
        ratio: `${fmt(oPeer / rPeer, 2)}x`,
        target: '',
      },
      {
        figure: 'CPU per round trip, both ends',
        value: `${fmt(oHost + oPeer, 1)} us`,
        baseline: `${fmt(rHost + rPeer, 1)} us`,
        ratio: `${fmt((oHost + oPeer) / (rHost + rPeer), 2)}x`,
        target: '',
      },
      {
        figure: 'reference, same run: 64 B round trip over the Unix socket (median)',
        value: `${fmt(median(ou.wall), 1)} us`,
        baseline: `${fmt(median(ru.wall), 1)} us raw Unix socket echo`,
        ratio: `${fmt(unixRatio, 2)}x`,
        target: '',
      },
      {
        figure: 'reference: CPU per round trip over the Unix socket, both ends',
        value: `${fmt(us(ou.hostNs + ou.peerNs, ou.calls), 1)} us`,
        baseline: `${fmt(us(ru.hostNs + ru.peerNs, ru.calls), 1)} us`,
        ratio: `${fmt((ou.hostNs + ou.peerNs) / (ru.hostNs + ru.peerNs), 2)}x`,
        target: '',
      },
      {
        figure: 'load average (1 min) at the start',
        value: fmt(load, 1),
        baseline: `${cpus().length} CPUs`,
        ratio: '',
        target: '',
      },
    ];
    printTable('TLS transport (process mode over TCP+TLS)', rows);
    return rows.every((row) => row.met !== false);
  } finally {
    await raw.close();
    await rawUnix.close();
    await host.close();
    await unixHost.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
