// The runner's worker thread: hosts the plugin's runtime, the same code as mode `none`.
import { join } from 'node:path';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { errorPayload, type PluginSpec } from '../src/protocol/messages.js';
import type { PluginRuntime } from '../src/runtime/runtime.js';
import { WasmPlugin } from '../src/runtime/wasm/wasm-plugin.js';
import { RemoteHostApi } from './remote-host-api.js';

interface WorkerInput {
  spec: PluginSpec;
  bytes: Uint8Array;
  flag: Int32Array;
  hostPort: MessagePort;
  workDir: string;
}

const port = parentPort;
if (port === null) throw new Error('worker.js runs as a worker thread of the sandbox-runner');
const { spec, bytes, flag, hostPort, workDir } = workerData as WorkerInput;
const host = new RemoteHostApi(hostPort, flag, (level, message) =>
  port.postMessage({ t: 'log', level, message }),
);

let runtime: PluginRuntime;
try {
  if (spec.type === 'wasm') {
    runtime = new WasmPlugin({
      pluginId: spec.id,
      module: new WebAssembly.Module(bytes),
      exports: spec.exports ?? [],
      isCommand: spec.isCommand ?? false,
      host,
      limits: spec.limits,
      wasi: spec.wasi,
    });
  } else {
    // Before the library's code runs: its constructors run at load. (koffi is loaded here anyway.)
    if (process.platform === 'linux') (await import('./confine.js')).denyTracing();
    const { NativePlugin } = await import('../src/runtime/native/native-plugin.js');
    runtime = new NativePlugin({
      pluginId: spec.id,
      bytes,
      privateDir: join(workDir, 'native'),
      host,
      limits: spec.limits,
      hostApiVersion: spec.apiVersion,
    });
  }
  runtime.init();
  port.postMessage({ t: 'ready', functions: runtime.functions });
} catch (error) {
  port.postMessage({ t: 'loadError', ...errorPayload(error) });
  throw error;
}

port.on('message', (msg: { t: string; id: number; fn: string; input: Uint8Array }) => {
  if (msg.t === 'call') {
    try {
      const result = runtime.call(msg.fn, msg.input);
      port.postMessage({ t: 'result', id: msg.id, output: result.output, fuelConsumed: result.fuelConsumed });
    } catch (error) {
      port.postMessage({ t: 'error', id: msg.id, ...errorPayload(error) });
    }
  } else if (msg.t === 'shutdown') {
    try {
      runtime.deactivate();
    } finally {
      port.postMessage({ t: 'bye' });
    }
  }
});
