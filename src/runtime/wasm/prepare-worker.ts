// The worker thread that prepares a large module (compile-wasm.ts starts it with a heap cap and a deadline),
// so no module, however it is shaped, can hold the host's own thread or grow the host's heap.
import { parentPort, workerData } from 'node:worker_threads';
import { ReedError } from '../../errors.js';
import { type PrepareJob, runPrepareJob } from './prepare-job.js';

const { source, job } = workerData as { source: Uint8Array; job: PrepareJob };
try {
  const result = runPrepareJob(source, job);
  parentPort?.postMessage({ ok: true, bytes: result.bytes, info: result.info }, [
    result.bytes.buffer as ArrayBuffer,
  ]);
} catch (error) {
  parentPort?.postMessage({
    ok: false,
    code: error instanceof ReedError ? error.code : 'wasm_prepare_failed',
    message: (error as Error).message,
  });
}
