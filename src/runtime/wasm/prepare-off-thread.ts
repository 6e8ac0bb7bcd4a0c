import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ReedError } from '../../errors.js';
import type { PreparedInfo, PrepareJob, PrepareResult } from './prepare-job.js';

// The tests run this file from src/ as TypeScript, which a worker cannot load: they use the built worker
// (npm run build), as process mode uses the built runner.
const here = fileURLToPath(import.meta.url);
const PREPARE_WORKER = here.endsWith('.ts')
  ? join(dirname(here), '../../../dist/src/runtime/wasm/prepare-worker.js')
  : join(dirname(here), 'prepare-worker.js');

/**
 * Runs prepare-job.ts's runPrepareJob in a worker thread with a capped heap and a deadline, so a module cannot
 * hold the host's thread or exhaust its heap; the worker is terminated on either. (The bytes it makes are
 * capped by prepare-module.ts's MAX_EXPANSION, not by the heap cap: buffers live outside V8's heap.) Long
 * because it is one promise settled once by whichever comes first of the worker's outcomes (no start,
 * deadline, answer, error, exit), each a few lines, read top to bottom.
 */
export function prepareOffThread(
  source: Uint8Array,
  job: PrepareJob,
  bounds: { timeoutMs: number; memoryMb: number },
): Promise<PrepareResult> {
  const at = { pluginId: job.pluginId, file: job.file };
  const failed = (why: string, cause?: unknown) =>
    new ReedError('wasm_prepare_failed', `${job.file}: preparing the module ${why}`, {
      ...at,
      ...(cause === undefined ? {} : { cause }),
    });
  return new Promise((resolve, reject) => {
    let worker: Worker;
    try {
      worker = new Worker(PREPARE_WORKER, {
        workerData: { source, job },
        resourceLimits: { maxOldGenerationSizeMb: bounds.memoryMb, maxYoungGenerationSizeMb: 16 },
      });
    } catch (error) {
      reject(failed(`could not start (${(error as Error).message}; is the package built?)`, error));
      return;
    }
    let settled = false;
    const settle = (done: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      done();
    };
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(
            failed(
              `took longer than ${bounds.timeoutMs} ms; a host that trusts it can raise [wasm] prepare_timeout_ms`,
            ),
          ),
        ),
      bounds.timeoutMs,
    );
    worker.once(
      'message',
      (
        m: { ok: true; bytes: Uint8Array; info: PreparedInfo } | { ok: false; code: string; message: string },
      ) =>
        settle(() =>
          m.ok
            ? resolve({ bytes: m.bytes, info: m.info })
            : reject(new ReedError(m.code as ReedError['code'], m.message, at)),
        ),
    );
    worker.once('error', (error: Error & { code?: string }) =>
      settle(() =>
        reject(
          error.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? failed(
                `needed more than ${bounds.memoryMb} MiB of heap; a host that trusts it can raise [wasm] prepare_memory_mb`,
                error,
              )
            : failed(`failed: ${error.message}`, error),
        ),
      ),
    );
    worker.once('exit', (code) =>
      settle(() => reject(failed(`ended (exit code ${code}) without an answer`))),
    );
  });
}
