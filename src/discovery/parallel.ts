import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';

/**
 * Runs a list of independent jobs on this thread and on worker threads at once, synchronously: the caller gets
 * every job's result, in the jobs' order, exactly as if it had run them itself one after the other.
 *
 * How: the jobs are cut into chunks; this thread and each worker claim the next chunk from a shared counter
 * (Atomics), so nobody waits for a worker that is still starting (a small list is all done here before the workers
 * have loaded). A worker posts each chunk's results on its own port; this thread takes them with
 * receiveMessageOnPort and, once no chunk is left to claim, waits on the shared counter of posted chunks
 * (Atomics.wait), never on the event loop, so the caller stays synchronous.
 *
 * Whatever a worker cannot do, this thread does: a chunk the worker failed (it posts `failed`), a result it marks
 * {@link REDO_HERE} (a value a copy between threads would change), and every chunk a worker claimed but gave no
 * sign of life on for {@link STALL_MS} (a crashed worker). A worker that cannot start at all leaves every chunk here.
 * The results are therefore the same with any number of workers, 0 included; only the time differs.
 */

/**
 * A job result that says "run this job on the calling thread": its value would not survive the copy. (A real result
 * equal to it is run again here too, which gives the same value.)
 */
export const REDO_HERE = 0;

/** Jobs per chunk: large enough that messages cost little, small enough that the threads end together. */
const CHUNK = 32;
/** How long a worker may hold a claimed chunk with no job finished before this thread does its chunks itself. */
const STALL_MS = 20_000;

// The shared counters (Int32Array indices).
const NEXT = 0; // the next chunk to claim
const POSTED = 1; // chunks a worker has posted (this thread waits on it)
const BEAT = 2; // jobs the workers have finished (a worker alive and working moves it)

/** What a worker receives. */
export interface ChunkWorkerData<J, C> {
  jobs: J[];
  context: C;
  state: SharedArrayBuffer;
  port: MessagePort;
  chunk: number;
}

interface ChunkMessage<R> {
  chunk: number;
  results?: (R | typeof REDO_HERE)[];
  /** The results as one JSON text (a worker serving with `json`): a string crosses as a copy of its bytes. */
  json?: string;
  failed?: true;
}

export interface ParallelOptions<J, R, C> {
  jobs: J[];
  context: C;
  /** Runs one job on this thread. */
  run: (job: J, context: C) => R;
  /**
   * After a copy from a worker: restore what the copy changed (e.g. prototypes). A result sent as JSON arrives as
   * JSON.parse gives it (`undefined` as null).
   */
  revive?: (result: R) => R;
  /** The worker's module: it calls {@link serveChunks} with the same job function. */
  workerUrl: URL;
  workers: number;
  /** False: this thread leaves the chunks to the workers (when any started) and only collects (for tests). */
  callerWorks?: boolean;
}

/** What the last {@link runInParallel} of this thread did: workers started, and the chunks they delivered. */
export const lastParallelRun = { workers: 0, chunks: 0, byWorkers: 0 };

/** Runs `jobs` as described above; `workers` 0, or a worker module that is not there, runs them all here. */
export function runInParallel<J, R, C>(options: ParallelOptions<J, R, C>): R[] {
  const { jobs, context, run } = options;
  const revive = options.revive ?? ((r: R) => r);
  const chunks = Math.ceil(jobs.length / CHUNK);
  const results = new Array<R>(jobs.length);
  const done = new Uint8Array(chunks);
  const state = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
  let received = 0;
  let byWorkers = 0;
  const runChunk = (chunk: number) => {
    const end = Math.min(jobs.length, (chunk + 1) * CHUNK);
    for (let i = chunk * CHUNK; i < end; i++) results[i] = run(jobs[i] as J, context);
    done[chunk] = 1;
    received++;
  };
  // A worker's message is checked like any input: a chunk out of range, or a count that is not the chunk's, is
  // redone here.
  const take = (message: ChunkMessage<R>) => {
    const chunk = message?.chunk;
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= chunks || done[chunk] === 1) return;
    const list: unknown = typeof message.json === 'string' ? parseJson(message.json) : message.results;
    if (!Array.isArray(list) || list.length !== chunkLength(chunk, jobs.length)) {
      runChunk(chunk);
      return;
    }
    (list as (R | typeof REDO_HERE)[]).forEach((result, k) => {
      const i = chunk * CHUNK + k;
      results[i] = result === REDO_HERE ? run(jobs[i] as J, context) : revive(result);
    });
    done[chunk] = 1;
    received++;
    byWorkers++;
  };

  const started = startWorkers(options, state, chunks);
  const drain = () => {
    for (const { port } of started) {
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        take(m.message as ChunkMessage<R>);
      }
    }
  };
  try {
    const callerWorks = options.callerWorks !== false || started.length === 0;
    while (callerWorks) {
      const chunk = Atomics.add(state, NEXT, 1);
      if (chunk >= chunks) break;
      runChunk(chunk);
      if (started.length > 0) drain();
    }
    // Every chunk is claimed; wait for the workers' ones.
    let beat = Atomics.load(state, BEAT);
    let quietSince = Date.now();
    while (received < chunks) {
      const posted = Atomics.load(state, POSTED);
      drain();
      if (received >= chunks) break;
      if (Atomics.wait(state, POSTED, posted, 100) !== 'timed-out') continue;
      const now = Date.now();
      const beatNow = Atomics.load(state, BEAT);
      if (beatNow !== beat) {
        beat = beatNow;
        quietSince = now;
      } else if (now - quietSince >= STALL_MS) {
        // No worker has finished a job for a long time: a crashed one holds its chunk. Do what is missing here.
        for (let chunk = 0; chunk < chunks; chunk++) if (done[chunk] === 0) runChunk(chunk);
      }
    }
  } finally {
    Object.assign(lastParallelRun, { workers: started.length, chunks, byWorkers });
    for (const { worker, port } of started) {
      port.close();
      void worker.terminate();
    }
  }
  return results;
}

/** A worker's JSON text, or undefined when it does not parse (the chunk is then redone here). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function chunkLength(chunk: number, total: number): number {
  return Math.min(total, (chunk + 1) * CHUNK) - chunk * CHUNK;
}

function startWorkers<J, R, C>(
  options: ParallelOptions<J, R, C>,
  state: Int32Array,
  chunks: number,
): { worker: Worker; port: MessagePort }[] {
  const started: { worker: Worker; port: MessagePort }[] = [];
  // Only with at least two chunks for each thread is a worker worth its start; a missing module (the sources run
  // without a build, as under the test runner) means this thread does it all.
  if (options.workers < 1 || chunks < 2 * (options.workers + 1)) return started;
  if (!existsSync(fileURLToPath(options.workerUrl))) return started;
  for (let i = 0; i < options.workers; i++) {
    const { port1, port2 } = new MessageChannel();
    try {
      const data: ChunkWorkerData<J, C> = {
        jobs: options.jobs,
        context: options.context,
        state: state.buffer as SharedArrayBuffer,
        port: port2,
        chunk: CHUNK,
      };
      const worker = new Worker(options.workerUrl, { workerData: data, transferList: [port2] });
      worker.unref();
      // A worker that fails (it cannot load, it throws) only leaves its chunks to this thread.
      worker.on('error', () => {});
      started.push({ worker, port: port1 });
    } catch {
      port1.close();
      break;
    }
  }
  return started;
}

/**
 * The worker's side: claims chunks until none is left, runs each job with `run` and posts each chunk's results.
 * `portable` says whether a result survives the copy to the calling thread unchanged; one that does not is sent as
 * {@link REDO_HERE}. `json`: each chunk's results go as one JSON text instead of a structured clone (then `portable`
 * must say whether a result survives JSON). For discovery's candidates (bench/discovery: 32 per chunk) JSON.parse
 * took about half the time of the structured clone's deserialisation, and that is the calling thread's time.
 */
export function serveChunks<J, R, C>(
  data: ChunkWorkerData<J, C>,
  run: (job: J, context: C) => R,
  portable: (result: R) => boolean,
  json = false,
): void {
  const { jobs, context, port, chunk: size } = data;
  const state = new Int32Array(data.state);
  const chunks = Math.ceil(jobs.length / size);
  for (let chunk = Atomics.add(state, NEXT, 1); chunk < chunks; chunk = Atomics.add(state, NEXT, 1)) {
    let message: ChunkMessage<R>;
    try {
      const results: (R | typeof REDO_HERE)[] = [];
      const end = Math.min(jobs.length, (chunk + 1) * size);
      for (let i = chunk * size; i < end; i++) {
        const result = run(jobs[i] as J, context);
        results.push(portable(result) ? result : REDO_HERE);
        Atomics.add(state, BEAT, 1);
      }
      message = json ? { chunk, json: JSON.stringify(results) } : { chunk, results };
      port.postMessage(message);
    } catch {
      port.postMessage({ chunk, failed: true } satisfies ChunkMessage<R>);
    }
    Atomics.add(state, POSTED, 1);
    Atomics.notify(state, POSTED);
  }
  port.close();
}
