// Longer than most files here (~480 lines): runInParallel and runOffThread share the kept workers and a run's
// bookkeeping on the calling thread, which stay private to this file.
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
 *
 * Workers are kept between runs (per worker module) for {@link IDLE_MS}: a fresh worker thread is slow for its
 * first few thousand jobs (its module loads, V8 has compiled nothing yet: 260-380 us a plugin for discovery's first
 * 500 against 70-120 later), so a rescan soon after a scan, or the next round of a benchmark, would otherwise pay
 * that again. A kept worker holds nothing of a run but the code it ran: each run sends its jobs, context and shared
 * counters afresh, and every message carries the run's number, so a late message of an earlier run is never taken
 * as this one's. A worker that stalled a run, failed to start or exited is dropped, and the next run starts a new
 * one. Kept workers are unref'd (they never hold the process open); {@link closeParallelWorkers} ends them at once.
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
/**
 * How long a kept worker waits idle for the next run before it ends. An idle worker costs memory only (its isolate
 * and the modules it loaded), not CPU; long enough for a rescan right after a scan, short enough that a host that
 * scans once does not keep it.
 */
export const IDLE_MS = 10_000;

// The shared counters (Int32Array indices).
const NEXT = 0; // the next chunk to claim
const POSTED = 1; // chunks a worker has posted (this thread waits on it)
const BEAT = 2; // jobs the workers have finished (a worker alive and working moves it)

/** One run, as a worker receives it: in its workerData when it starts for it, on its port after that. */
export interface ChunkRun<J, C> {
  /** The run's number: the worker's messages carry it back. */
  run: number;
  jobs: J[];
  context: C;
  state: SharedArrayBuffer;
  chunk: number;
}

/** What a worker starts with: its port, and the run it was started for. */
export interface ChunkWorkerData<J, C> extends ChunkRun<J, C> {
  port: MessagePort;
}

interface ChunkMessage<R> {
  run: number;
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

/** What the last {@link runInParallel} of this thread did: workers used (`fresh`: started for it), and the chunks they delivered. */
export const lastParallelRun = { workers: 0, fresh: 0, chunks: 0, byWorkers: 0 };

/** A worker thread and this thread's end of its port; `lost`: it exited or failed, or stalled a run. */
interface KeptWorker {
  worker: Worker;
  port: MessagePort;
  lost: boolean;
  idle?: ReturnType<typeof setTimeout>;
}

/** The idle workers, by worker module. */
const kept = new Map<string, KeptWorker[]>();
let runs = 0;

/**
 * One run's side on the calling thread: the results in the jobs' order, which chunks are in, and how a chunk is run
 * here or taken from a worker's message. {@link runInParallel} and {@link runOffThread} share it.
 */
class RunState<J, R, C> {
  readonly results: R[];
  readonly done: Uint8Array;
  received = 0;
  byWorkers = 0;
  readonly #options: ParallelOptions<J, R, C>;
  readonly #revive: (result: R) => R;

  constructor(
    options: ParallelOptions<J, R, C>,
    readonly id: number,
    readonly chunks: number,
  ) {
    this.#options = options;
    this.#revive = options.revive ?? ((r: R) => r);
    this.results = new Array<R>(options.jobs.length);
    this.done = new Uint8Array(chunks);
  }

  get complete(): boolean {
    return this.received >= this.chunks;
  }

  runChunk(chunk: number): void {
    const { jobs, context, run } = this.#options;
    const end = Math.min(jobs.length, (chunk + 1) * CHUNK);
    for (let i = chunk * CHUNK; i < end; i++) this.results[i] = run(jobs[i] as J, context);
    this.done[chunk] = 1;
    this.received++;
  }

  /** Every chunk not in yet, run here (a worker that stalled or is gone). */
  finishHere(): void {
    for (let chunk = 0; chunk < this.chunks; chunk++) if (this.done[chunk] === 0) this.runChunk(chunk);
  }

  /**
   * A worker's message, checked like any input: another run's, a chunk out of range, or a count that is not the
   * chunk's, is not taken (the last two are redone here).
   */
  take(message: ChunkMessage<R>): void {
    if (message?.run !== this.id) return;
    const chunk = message.chunk;
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= this.chunks || this.done[chunk] === 1) return;
    const { jobs, context, run } = this.#options;
    const list: unknown = typeof message.json === 'string' ? parseJson(message.json) : message.results;
    if (!Array.isArray(list) || list.length !== chunkLength(chunk, jobs.length)) {
      this.runChunk(chunk);
      return;
    }
    (list as (R | typeof REDO_HERE)[]).forEach((result, k) => {
      const i = chunk * CHUNK + k;
      this.results[i] = result === REDO_HERE ? run(jobs[i] as J, context) : this.#revive(result);
    });
    this.done[chunk] = 1;
    this.received++;
    this.byWorkers++;
  }

  /** Every message already queued on the workers' ports, taken now. */
  drain(used: KeptWorker[]): void {
    for (const { port } of used) {
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        this.take(m.message as ChunkMessage<R>);
      }
    }
  }
}

/** A run's start, both ways (runInParallel, runOffThread): its chunks, the state workers claim them by, its books. */
function newRun<J, R, C>(
  options: Omit<ParallelOptions<J, R, C>, 'callerWorks'>,
): { chunks: number; state: Int32Array; run: RunState<J, R, C> } {
  const chunks = Math.ceil(options.jobs.length / CHUNK);
  const state = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
  return { chunks, state, run: new RunState(options, ++runs, chunks) };
}

/** What a run's workers are given. */
function chunkRun<J, R, C>(
  options: Omit<ParallelOptions<J, R, C>, 'callerWorks'>,
  run: RunState<J, R, C>,
  state: Int32Array,
): ChunkRun<J, C> {
  return {
    run: run.id,
    jobs: options.jobs,
    context: options.context,
    state: state.buffer as SharedArrayBuffer,
    chunk: CHUNK,
  };
}

/** Runs `jobs` as described above; `workers` 0, or a worker module that is not there, runs them all here. */
export function runInParallel<J, R, C>(options: ParallelOptions<J, R, C>): R[] {
  const { chunks, state, run } = newRun(options);
  let stalled = false;
  // Only with at least two chunks for each thread is a worker worth its start (a kept one is used likewise: what it
  // saves is small for such a list, and results are the same).
  const worth = options.workers >= 1 && chunks >= 2 * (options.workers + 1);
  const { used, fresh } = worth
    ? takeWorkers(options, chunkRun(options, run, state))
    : { used: [], fresh: 0 };
  try {
    const callerWorks = options.callerWorks !== false || used.length === 0;
    while (callerWorks) {
      const chunk = Atomics.add(state, NEXT, 1);
      if (chunk >= chunks) break;
      run.runChunk(chunk);
      if (used.length > 0) run.drain(used);
    }
    // Every chunk is claimed; wait for the workers' ones.
    let beat = Atomics.load(state, BEAT);
    let quietSince = Date.now();
    while (!run.complete) {
      const posted = Atomics.load(state, POSTED);
      run.drain(used);
      if (run.complete) break;
      if (Atomics.wait(state, POSTED, posted, 100) !== 'timed-out') continue;
      const now = Date.now();
      const beatNow = Atomics.load(state, BEAT);
      if (beatNow !== beat) {
        beat = beatNow;
        quietSince = now;
      } else if (now - quietSince >= STALL_MS) {
        // No worker has finished a job for a long time: a crashed one holds its chunk. Do what is missing here.
        stalled = true;
        run.finishHere();
      }
    }
  } finally {
    Object.assign(lastParallelRun, { workers: used.length, fresh, chunks, byWorkers: run.byWorkers });
    release(options, used, run.complete && !stalled);
  }
  return run.results;
}

/**
 * The jobs of {@link runInParallel} on worker threads only, awaited: this thread runs none of them while a worker
 * can, and its event loop turns meanwhile (an install's scan on a serving host: src/host/install.ts). However few
 * the jobs, the workers are used (what is bought is the free event loop, not time). The results are the same as
 * runInParallel's; what a worker cannot do is done here as there: a result marked {@link REDO_HERE}, a failed
 * chunk, every chunk left when the run's workers are all gone (exited, failed to start), every chunk missing after
 * {@link STALL_MS} without a job finished; and with no worker at all (`workers` 0, the module missing: the sources
 * under the test runner), every job, synchronously.
 */
export async function runOffThread<J, R, C>(
  options: Omit<ParallelOptions<J, R, C>, 'callerWorks'>,
): Promise<R[]> {
  const { chunks, state, run } = newRun(options);
  const { used, fresh } =
    options.workers >= 1 && chunks > 0
      ? takeWorkers(options, chunkRun(options, run, state))
      : { used: [], fresh: 0 };
  let stalled = false;
  try {
    if (used.length === 0) run.finishHere();
    else
      await new Promise<void>((resolve, reject) => {
        const stop: (() => void)[] = [];
        const settle = (error?: unknown) => {
          for (const undo of stop.splice(0)) undo();
          if (error === undefined) resolve();
          else reject(error);
        };
        // A job run here (a redo) may throw, as one of runInParallel's would: the run then rejects.
        const step = (work: () => void) => {
          try {
            work();
          } catch (error) {
            settle(error);
            return;
          }
          if (run.complete) settle();
        };
        const onMessage = (message: ChunkMessage<R>) => step(() => run.take(message));
        // Its messages may still be queued behind its exit: taken first.
        const onGone = () =>
          step(() => {
            run.drain(used);
            if (used.every((w) => w.lost)) run.finishHere();
          });
        for (const w of used) {
          w.port.on('message', onMessage);
          w.worker.on('exit', onGone);
          w.worker.on('error', onGone);
          stop.push(() => {
            w.port.off('message', onMessage);
            w.worker.off('exit', onGone);
            w.worker.off('error', onGone);
          });
        }
        let beat = 0;
        let quietSince = Date.now();
        const watch = setInterval(() => {
          const beatNow = Atomics.load(state, BEAT);
          if (beatNow !== beat) {
            beat = beatNow;
            quietSince = Date.now();
          } else if (Date.now() - quietSince >= STALL_MS) {
            stalled = true;
            step(() => run.finishHere());
          }
        }, 1_000);
        watch.unref();
        stop.push(() => clearInterval(watch));
        // A worker lost before its listeners were on (a kept one that exited just now) says so no more.
        if (used.every((w) => w.lost)) onGone();
      });
  } finally {
    Object.assign(lastParallelRun, { workers: used.length, fresh, chunks, byWorkers: run.byWorkers });
    release(options, used, run.complete && !stalled);
  }
  return run.results;
}

/**
 * After a run: its workers kept for the next one unless the run went wrong (a stall, a throw out of a job here): a
 * worker of a run that did not end cleanly may still be busy with it.
 */
function release<J, R, C>(options: ParallelOptions<J, R, C>, used: KeptWorker[], clean: boolean): void {
  for (const w of used) {
    if (clean && !w.lost) keep(options.workerUrl.href, w);
    else drop(w);
  }
}

/** Ends every kept worker now (a host that closes); a later run starts new ones. */
export function closeParallelWorkers(): void {
  for (const list of kept.values()) for (const w of list.splice(0)) drop(w);
  kept.clear();
}

/** How many idle workers are kept (for tests). */
export function keptParallelWorkers(): number {
  let n = 0;
  for (const list of kept.values()) n += list.length;
  return n;
}

function keep(href: string, w: KeptWorker): void {
  let list = kept.get(href);
  if (list === undefined) {
    list = [];
    kept.set(href, list);
  }
  const idle = list;
  idle.push(w);
  w.idle = setTimeout(() => {
    const at = idle.indexOf(w);
    if (at >= 0) idle.splice(at, 1);
    drop(w);
  }, IDLE_MS);
  w.idle.unref();
}

function drop(w: KeptWorker): void {
  w.lost = true;
  if (w.idle !== undefined) clearTimeout(w.idle);
  w.idle = undefined;
  w.port.close();
  void w.worker.terminate();
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

/**
 * The workers for a run, each already given it: kept ones of the same module first, then new ones. None when the
 * module is missing (the sources run without a build, as under the test runner): this thread then does it all.
 * (Whether the run is worth workers at all is its caller's question.)
 */
function takeWorkers<J, R, C>(
  options: ParallelOptions<J, R, C>,
  run: ChunkRun<J, C>,
): { used: KeptWorker[]; fresh: number } {
  const used: KeptWorker[] = [];
  const idle = kept.get(options.workerUrl.href) ?? [];
  while (used.length < options.workers && idle.length > 0) {
    const w = idle.pop() as KeptWorker;
    clearTimeout(w.idle);
    w.idle = undefined;
    if (w.lost) {
      drop(w);
      continue;
    }
    try {
      w.port.postMessage(run);
      used.push(w);
    } catch {
      drop(w);
    }
  }
  let fresh = 0;
  if (used.length < options.workers && !existsSync(fileURLToPath(options.workerUrl))) return { used, fresh };
  while (used.length < options.workers) {
    const { port1, port2 } = new MessageChannel();
    try {
      const data: ChunkWorkerData<J, C> = { ...run, port: port2 };
      const worker = new Worker(options.workerUrl, { workerData: data, transferList: [port2] });
      worker.unref();
      const w: KeptWorker = { worker, port: port1, lost: false };
      // A worker that fails (it cannot load, it throws) or exits only leaves its chunks to this thread, and is not
      // used again.
      worker.on('error', () => {
        w.lost = true;
      });
      worker.on('exit', () => {
        w.lost = true;
      });
      used.push(w);
      fresh++;
    } catch {
      port1.close();
      break;
    }
  }
  return { used, fresh };
}

/**
 * The worker's side: serves the run it started with and then each run its port brings. For each: claims chunks
 * until none is left, runs each job with `run` and posts each chunk's results.
 * `portable` says whether a result survives the copy to the calling thread unchanged; one that does not is sent as
 * {@link REDO_HERE}. `json`: each chunk's results go as one JSON text instead of a structured clone (then `portable`
 * must say whether a result survives JSON). For discovery's candidates (bench/discovery: 32 per chunk) JSON.parse
 * took about half the time of the structured clone's deserialisation, and that is the calling thread's time.
 * `prepare`: called with each run's context before its first job.
 */
export function serveChunks<J, R, C>(
  data: ChunkWorkerData<J, C>,
  run: (job: J, context: C) => R,
  portable: (result: R) => boolean,
  json = false,
  prepare?: (context: C) => void,
): void {
  const { port } = data;
  const serve = (given: ChunkRun<J, C>) => {
    const { jobs, context, chunk: size, run: runId } = given;
    const state = new Int32Array(given.state);
    const chunks = Math.ceil(jobs.length / size);
    prepare?.(context);
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
        message = json
          ? { run: runId, chunk, json: JSON.stringify(results) }
          : { run: runId, chunk, results };
        port.postMessage(message);
      } catch {
        port.postMessage({ run: runId, chunk, failed: true } satisfies ChunkMessage<R>);
      }
      Atomics.add(state, POSTED, 1);
      Atomics.notify(state, POSTED);
    }
  };
  serve(data);
  // The next runs. When the calling thread closes its end (idle, a failed run), nothing holds this thread.
  port.on('message', serve);
}
