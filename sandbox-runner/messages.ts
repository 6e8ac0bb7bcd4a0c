// The messages between the runner's main thread (main.ts, which owns the connection to the host) and its worker
// thread (worker.ts, which runs the plugin): one union per direction, tagged on `type`.
import type { MessagePort } from 'node:worker_threads';
import type { HostCallMeta, HostReply } from '../src/protocol/host-calls.js';
import type { ErrorPayload, PluginSpec } from '../src/protocol/messages.js';
import type { CallWasi } from '../src/runtime/call-wasi.js';

/** What the worker starts with (workerData). */
export interface WorkerInput {
  spec: PluginSpec;
  bytes: Uint8Array;
  /** The flag the worker waits on while the main thread fetches a host reply (0: waiting, 1: there). */
  flag: Int32Array;
  /** The port host calls go out and replies come back on. */
  hostPort: MessagePort;
  workDir: string;
}

/** Main thread -> worker. */
export type ToWorker =
  | { type: 'call'; id: number; fn: string; input: Uint8Array; wasi: CallWasi | undefined }
  | { type: 'shutdown' };

/** Worker -> main thread. */
export type FromWorker =
  | { type: 'ready'; functions: readonly string[] }
  | { type: 'loadError'; error: ErrorPayload }
  | { type: 'result'; id: number; output: Uint8Array; fuelConsumed: number }
  | { type: 'error'; id: number; error: ErrorPayload }
  | { type: 'log'; level: number; message: string }
  | { type: 'bye' };

/** Worker -> main thread, on the host port: a host call, as the HostCall frame's parts. */
export interface HostCallMessage {
  type: 'hostCall';
  meta: HostCallMeta;
  body?: Uint8Array;
}

/** Main thread -> worker, on the host port: the host's reply. */
export interface HostReplyMessage {
  type: 'hostReply';
  reply: HostReply;
}
