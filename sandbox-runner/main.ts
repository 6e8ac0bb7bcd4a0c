// The sandbox-runner: one program for process and container modes (docs/PROTOCOL.md).
//   node sandbox-runner/main.js --plugin-id ID --socket PATH      (the same as --connect unix:PATH)
//   node sandbox-runner/main.js --plugin-id ID --connect ADDRESS  (src/transport/transport.ts)
// It connects back to the host, proves itself with the one-time secret, loads the plugin the host sends in a
// worker thread, serves calls, and exits as soon as the connection closes: a host killed with SIGKILL leaves
// no runner behind.
import { readFileSync } from 'node:fs';
import { connect as connectUnix } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MessageChannel, Worker } from 'node:worker_threads';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_FROM_HOST,
  PROTOCOL_VERSION,
} from '../src/protocol/frames.js';
import { readHostReply } from '../src/protocol/host-calls.js';
import { errorPayload, logPayload, type PluginSpec } from '../src/protocol/messages.js';
import { type CallWasi, checkCallWasi } from '../src/runtime/call-wasi.js';
import type { PluginRuntime } from '../src/runtime/runtime.js';
import { checkTraceParent } from '../src/trace-context.js';
import { TLS_SCHEME } from '../src/transport/tls-address.js';
import { dial, UNIX_SCHEME } from '../src/transport/transport.js';
import type { FromWorker, HostCallMessage, HostReplyMessage, ToWorker, WorkerInput } from './messages.js';
import { runnerHostApi } from './runner-host-api.js';
import { startRuntime } from './start-runtime.js';
import { WARM_RUNNER, warmUp } from './warm-up.js';

/**
 * The command line: `--NAME VALUE` or `--NAME=VALUE` of the three options below, nothing else (what node:util's
 * parseArgs with `strict` accepted; a later one of the same name wins). Read here rather than with parseArgs, whose
 * two modules a runner compiled at every start (~1 ms of its CPU); anything else is the usage error.
 */
function parseOptions(
  args: readonly string[],
): Partial<Record<'plugin-id' | 'socket' | 'connect', string>> | undefined {
  const values: Partial<Record<'plugin-id' | 'socket' | 'connect', string>> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!arg.startsWith('--') || (name !== 'plugin-id' && name !== 'socket' && name !== 'connect'))
      return undefined;
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    // A value that is missing, or is itself an option, is an error (as parseArgs had it).
    if (value === undefined || (eq === -1 && value.startsWith('-'))) return undefined;
    values[name] = value;
  }
  return values;
}
const options = parseOptions(process.argv.slice(2));
const values = options ?? {};
/** The id it says Hello with; a warm runner (src/backends/pool/) takes its plugin's from the Welcome. */
let pluginId = values['plugin-id'];
/** Where to dial, as the host said (the host's transport decides; this program only dials it). */
const address =
  values.connect ?? (values.socket === undefined ? undefined : `${UNIX_SCHEME}${values.socket}`);
if (
  options === undefined ||
  pluginId === undefined ||
  address === undefined ||
  (values.connect !== undefined && values.socket !== undefined)
) {
  process.stderr.write('usage: sandbox-runner --plugin-id ID (--socket PATH | --connect ADDRESS)\n');
  process.exit(2);
}

/**
 * The secret, from an inherited pipe (process mode) or a file beside the socket (container mode: the directory is
 * read-only here; the host removes the file once this runner has authenticated).
 */
function readSecret(): string {
  const fd = process.env.REED_SECRET_FD;
  if (fd !== undefined) return readFileSync(Number(fd), 'utf8').trim();
  // A file the runner's starter placed (a Swarm secret under /run/secrets: the TLS transport, docs/PROTOCOL.md).
  const file = process.env.REED_SECRET_FILE;
  if (file !== undefined) return readFileSync(file, 'utf8').trim();
  if (!(address as string).startsWith(UNIX_SCHEME)) {
    process.stderr.write(
      'sandbox-runner: no secret (REED_SECRET_FD, REED_SECRET_FILE) for a connection that is not a Unix socket\n',
    );
    process.exit(2);
  }
  return readFileSync(join(dirname((address as string).slice(UNIX_SCHEME.length)), 'secret'), 'utf8').trim();
}

const secret = readSecret();
delete process.env.REED_SECRET_FD;

/**
 * Linux: die with the host even if this thread gets stuck in a plugin, and deny tracing (sandbox-runner/
 * confine.ts). In process mode bubblewrap has done both before this program started (--die-with-parent, and
 * --seccomp with the same filter: REED_SECCOMP=installed), so a WASM plugin's runner loads no native code at all
 * (koffi: ~23 million instructions, a tenth of the runner's start). Elsewhere (container mode) it runs off the
 * start-up path for WASM, whose code makes no syscalls of its own; a native plugin's worker denies tracing itself
 * before the library is loaded (for every thread), so `denyTracing` is false then. A filter the kernel refuses
 * stops the runner: the host then reports the sandbox as crashed, with this message.
 */
async function confineLater(denyTracing: boolean): Promise<void> {
  if (process.platform !== 'linux') return;
  const pdeathsig = process.env.REED_PDEATHSIG === '1';
  const traced = denyTracing && process.env.REED_SECCOMP !== 'installed';
  if (!pdeathsig && !traced) return;
  try {
    const confine = await import('./confine.js');
    if (pdeathsig) confine.dieWithParent();
    if (traced) confine.denyTracing();
  } catch (error) {
    process.stderr.write(`sandbox-runner: ${(error as Error).message}\n`);
    exit(1);
  }
}

const exit = (code: number) => process.exit(code);
const overTls = address.startsWith(TLS_SCHEME);
/** The connection to the host, once dialled (`connect` below: at the end of this module's evaluation). */
let socket: ReturnType<typeof dial>;
const decoder = new FrameDecoder(Number(process.env.REED_MAX_FRAME ?? MAX_FRAME_FROM_HOST));
const send = (type: FrameType, id: number, meta?: object, body?: Uint8Array) =>
  socket.write(encodeFrame(type, id, meta, body));

/**
 * What a Unix socket reads into, every time (net's `onread`). Node's own path mallocs a 64 KiB buffer per read,
 * frees it, and passes each chunk through the Readable stream (push, 'data', maybeReadMore on the next tick): a 64 B
 * echo cost the runner 33,300 instructions a call that way, 27,100 this way (callgrind; the raw echo's peer,
 * which reads the usual way, 29,800). So a frame that arrived whole is a view of this buffer until the next read:
 * `handle` uses it at once (a local call copies its input into the guest's memory before it returns), and
 * whatever outlives the call to `handle` (a Welcome's bytes, a worker's input, a host reply) is `kept`.
 */
// Not zero-filled: only the bytes each read wrote are ever looked at, and the pages a runner never reads into (an
// idle runner's, most of them) are never touched (a thousand runners: 64 MiB less).
const readBuffer = Buffer.allocUnsafeSlow(64 * 1024);
/** `body`, copied if it is a view of readBuffer (a frame that came in pieces has a buffer of its own already). */
const kept = (body: Uint8Array): Uint8Array =>
  body.buffer === readBuffer.buffer ? new Uint8Array(body) : body;

let worker: Worker | undefined;
const flag = new Int32Array(new SharedArrayBuffer(4));
const pendingHostCalls = new Map<number, true>();
let nextHostCall = 1;
let hostPort: MessageChannel['port1'] | undefined;
const toWorker = (message: ToWorker) => worker?.postMessage(message);
/** When each traced call in the worker started (epoch ms): calls never overlap, so this holds one at most. */
const tracedCalls = new Map<number, number>();
const clock = () => performance.timeOrigin + performance.now();
/** A Result's metadata: the fuel, and for a traced call when it ran here (the host's child span). */
const resultMeta = (fuelConsumed: number, startedAt: number | undefined) =>
  startedAt === undefined ? { fuelConsumed } : { fuelConsumed, ran: [startedAt, clock()] };

/**
 * node:worker_threads, loaded by the first worker: a plugin without host calls runs on this thread and never needs
 * it (~0.7 ms of a runner's start, and its modules' memory). Through the require main.js gives runner.js (this
 * program is one CommonJS file: scripts/bundle.mjs), not one of node:module's (~0.4 ms more at every start): that
 * require gives the runner its heap flags back first, which a Worker's heap is sized from.
 */
const workerThreads = (): typeof import('node:worker_threads') => require('node:worker_threads');

function startWorker(spec: PluginSpec, bytes: Uint8Array): void {
  const { MessageChannel, Worker } = workerThreads();
  const channel = new MessageChannel();
  hostPort = channel.port1;
  const workerData: WorkerInput = { spec, bytes, flag, hostPort: channel.port2, workDir: process.cwd() };
  worker = new Worker(join(dirname(fileURLToPath(import.meta.url)), 'worker.js'), {
    workerData,
    transferList: [channel.port2],
    // The plugin's memory is capped by the module itself and by the sandbox's limits, not the worker's heap.
  });
  hostPort.on('message', (request: HostCallMessage) => {
    const id = nextHostCall++;
    pendingHostCalls.set(id, true);
    send(FrameType.HostCall, id, request.meta, request.body);
  });
  worker.on('message', (message: FromWorker) => {
    switch (message.type) {
      case 'ready':
        send(FrameType.Ready, 0, { functions: message.functions });
        break;
      case 'loadError':
        send(FrameType.Error, 0, message.error);
        break;
      case 'result': {
        const startedAt = tracedCalls.get(message.id);
        tracedCalls.delete(message.id);
        send(FrameType.Result, message.id, resultMeta(message.fuelConsumed, startedAt), message.output);
        break;
      }
      case 'error':
        tracedCalls.delete(message.id);
        send(FrameType.Error, message.id, message.error);
        break;
      case 'log':
        send(FrameType.Log, 0, logPayload(message.level, message.message));
        break;
      case 'bye':
        send(FrameType.Bye, 0);
        socket.end(() => exit(0));
        break;
    }
  });
  worker.on('error', (error) => {
    send(FrameType.Error, 0, { code: 'sandbox_crashed', message: `runner worker failed: ${error.message}` });
    socket.end(() => exit(1));
  });
}

/**
 * A plugin that needs no answers from the host (a WASM module importing none of the functions a runner must ask
 * for) runs right here on the main thread: no worker to start, no thread hops per call. Its log lines are sent
 * as they come; config_get is answered from the configuration the host sent, as in the worker.
 */
let local: PluginRuntime | undefined;

async function startLocal(spec: PluginSpec, bytes: Uint8Array): Promise<void> {
  const host = runnerHostApi({
    log: (level, message) => send(FrameType.Log, 0, logPayload(level, message)),
    configuration: spec.configuration,
  });
  try {
    local = await startRuntime(spec, bytes, host, process.cwd());
    send(FrameType.Ready, 0, { functions: local.functions });
  } catch (error) {
    send(FrameType.Error, 0, errorPayload(error));
  }
}

/** Whether the plugin is given a data directory it may write, with quotas (the host's ledger leases them). */
function writesDataDir(spec: PluginSpec): boolean {
  const fs = spec.filesystem;
  return fs !== undefined && !fs.readOnly && (fs.diskBytes > 0 || fs.maxFiles > 0);
}

function handle(frame: Frame): void {
  switch (frame.type) {
    case FrameType.Welcome: {
      const spec = (frame.meta as { plugin: PluginSpec }).plugin;
      if (typeof spec?.id === 'string') pluginId = spec.id;
      const bytes = kept(frame.body);
      // A plugin that may write its data directory asks the host for leases on its quotas (quota-leases.ts): a worker.
      if (spec.type === 'wasm' && spec.hostCalls === false && !writesDataDir(spec))
        void startLocal(spec, bytes);
      else startWorker(spec, bytes);
      setImmediate(() => void confineLater(spec.type !== 'native'));
      break;
    }
    case FrameType.Call: {
      // The call's WASI args and env and its trace context, checked again here (count, sizes, strings only; a
      // traceparent of 55 characters): a bad field fails the call.
      let wasi: CallWasi | undefined;
      let traced: boolean;
      try {
        wasi = checkCallWasi(pluginId as string, frame.meta.wasi);
        traced = checkTraceParent(frame.meta.trace, pluginId) !== undefined;
      } catch (error) {
        send(FrameType.Error, frame.id, errorPayload(error));
        break;
      }
      const startedAt = traced ? clock() : undefined;
      if (local !== undefined) {
        try {
          const result = local.call(String(frame.meta.fn), frame.body, 0, wasi);
          send(FrameType.Result, frame.id, resultMeta(result.fuelConsumed, startedAt), result.output);
        } catch (error) {
          send(FrameType.Error, frame.id, errorPayload(error));
        }
      } else {
        if (startedAt !== undefined) tracedCalls.set(frame.id, startedAt);
        toWorker({ type: 'call', id: frame.id, fn: String(frame.meta.fn), input: kept(frame.body), wasi });
      }
      break;
    }
    case FrameType.HostReply: {
      if (!pendingHostCalls.delete(frame.id)) return;
      const reply: HostReplyMessage = {
        type: 'hostReply',
        reply: readHostReply(frame.meta, kept(frame.body)),
      };
      hostPort?.postMessage(reply);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      break;
    }
    case FrameType.Ping:
      send(FrameType.Pong, frame.id);
      break;
    case FrameType.Shutdown:
      if (local !== undefined) {
        try {
          local.deactivate();
        } finally {
          send(FrameType.Bye, 0);
          socket.end(() => exit(0));
        }
      } else if (worker === undefined) socket.end(() => exit(0));
      else toWorker({ type: 'shutdown' });
      break;
    default:
      exit(3);
  }
}

/**
 * A warm runner of a pool (warm-preload.ts marked it) warms the WASM runtime up first (warm-up.ts: the pool's fill
 * pays for it, not the hand-out), then it dials the host. A runner dials at once: no await comes before `dial`
 * (this program is one CommonJS file, scripts/bundle.mjs; its own import()s are of modules in that file).
 */
async function connect(): Promise<void> {
  if ((globalThis as Record<symbol, unknown>)[WARM_RUNNER] === true) await warmUp();
  try {
    // node:tls (and the crypto modules under it) only for a runner that dials over TLS: ~1.3 MiB of heap and
    // malloc in every runner otherwise (docs/ARCHITECTURE.md, "Process mode", the runner's memory).
    socket = overTls
      ? (await import('./tls-dial.js')).dialTls(address as string)
      : (address as string).startsWith(UNIX_SCHEME)
        ? connectUnix({
            path: (address as string).slice(UNIX_SCHEME.length),
            onread: { buffer: readBuffer, callback: (n: number) => received(readBuffer.subarray(0, n)) },
          })
        : dial(address as string);
  } catch (error) {
    process.stderr.write(`sandbox-runner: ${(error as Error).message}\n`);
    process.exit(2);
  }
  // Over TLS, the Hello (the secret) waits for the orchestrator's certificate to be verified (sandbox-runner/tls-dial.ts).
  socket.on(overTls ? 'secureConnect' : 'connect', () =>
    send(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId, secret }),
  );
  socket.on('close', () => exit(0));
  socket.on('error', (error) => {
    process.stderr.write(`sandbox-runner: connection to ${address} failed: ${error.message}\n`);
    exit(1);
  });
  // Over TLS the chunks come as 'data' (each its own Buffer); a Unix socket reads into readBuffer instead.
  if (overTls) socket.on('data', received);
}

/** A chunk from the host, read; true: keep reading (onread's callback pauses the socket on false). */
function received(chunk: Buffer): true {
  try {
    for (const frame of decoder.push(chunk)) handle(frame);
  } catch {
    exit(3);
  }
  return true;
}

void connect();
