// The runner's worker thread: hosts the plugin's runtime, the same code as mode `none`. Its host calls block on
// a shared flag while the main thread (which owns the connection) fetches the host's reply.
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { ReedError } from '../src/errors.js';
import { checkLeaseAnswer, type HostReply, LEASE_OP } from '../src/protocol/host-calls.js';
import { errorPayload } from '../src/protocol/messages.js';
import type { PluginRuntime } from '../src/runtime/runtime.js';
import type { QuotaLeases } from '../src/runtime/wasm/quota-leases.js';
import { awaitMessage } from './host-reply-wait.js';
import type { FromWorker, HostCallMessage, HostReplyMessage, ToWorker, WorkerInput } from './messages.js';
import { runnerHostApi } from './runner-host-api.js';
import { startRuntime } from './start-runtime.js';

const parent = parentPort;
if (parent === null) throw new Error('worker.js runs as a worker thread of the sandbox-runner');
const port: MessagePort = parent;
const post = (message: FromWorker) => port.postMessage(message);
const { spec, bytes, flag, hostPort, workDir }: WorkerInput = workerData;

function ask(call: { meta: HostCallMessage['meta']; body?: Uint8Array }): HostReply {
  Atomics.store(flag, 0, 0);
  hostPort.postMessage({ type: 'hostCall', ...call } satisfies HostCallMessage);
  // If the connection is lost the main thread exits the process, this thread with it.
  return awaitMessage<HostReplyMessage>(flag, hostPort).reply;
}

/** The data directory's quotas, leased from the host's ledger (src/runtime/wasm/quota-leases.ts). */
const leases: QuotaLeases = {
  lease(request) {
    const answer = checkLeaseAnswer(ask({ meta: { op: LEASE_OP, args: [], lease: request } }));
    if (answer === undefined)
      throw new ReedError('protocol_violation', 'the host answered fs_lease with no lease');
    return answer;
  },
};

const host = runnerHostApi({
  log: (level, message) => post({ type: 'log', level, message }),
  configuration: spec.configuration,
  ask,
});

/** Loads the plugin, then serves the main thread's messages (no top-level await: this is a CommonJS bundle). */
async function run(): Promise<void> {
  let runtime: PluginRuntime;
  try {
    runtime = await startRuntime(spec, bytes, host, workDir, leases);
    post({ type: 'ready', functions: runtime.functions });
  } catch (error) {
    post({ type: 'loadError', error: errorPayload(error) });
    // Not rethrown: a worker's uncaught error reaches the main thread by another channel than its messages, and came
    // first now and then (3 % of load errors here, 27 % under load): the runner then sent sandbox_crashed before the
    // plugin's own code (init_failed). The host stops the runner on the load error.
    process.exit(1);
  }

  port.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'call':
        try {
          const { output, fuelConsumed } = runtime.call(message.fn, message.input, 0, message.wasi);
          post({ type: 'result', id: message.id, output, fuelConsumed });
        } catch (error) {
          post({ type: 'error', id: message.id, error: errorPayload(error) });
        }
        break;
      case 'shutdown':
        try {
          runtime.deactivate();
        } finally {
          post({ type: 'bye' });
        }
        break;
    }
  });
}

void run();
