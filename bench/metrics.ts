// Metrics cost (issue 15): mode none's awaited host.call of the 64-byte echo with a ReedMetrics registry
// subscribed (every call then publishes reed:call:finished and adds to its series) against none, in one run.
// Target: at most +10 %.
//
// The gap (~0.05 us on ~1.1 us) is smaller than a batch's noise on a shared machine, so the figure is built to hold
// still: two child processes (bench/metrics-child.ts), one with metrics on and one off, each warmed up and in its
// steady state (subscribing and unsubscribing in one process throws V8's optimized call path away each time, and
// its re-optimization then lands in the measured batches), asked for short batches in turn, the order swapped every
// round (off-on, on-off: a drift of the machine favours neither); a minor GC before each batch; judged in CPU time
// per call (process.cpuUsage: another process taking the CPU in the middle of a batch does not move it as it moves
// wall-clock time) on the median of the rounds' ratios, their spread printed; and all that over several pairs of
// fresh children (PAIRS), since each child's compiled call path is a draw of its own.
//
// REED_BENCH_METRICS_CALLGRIND=1 adds instructions per call on the main thread, on against off, counted by
// callgrind (valgrind) in the same children: steady whatever the load. It takes a few minutes.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { fmt, median, printTable, type Row } from './report.js';

const CHILD = fileURLToPath(new URL('./metrics-child.js', import.meta.url));
const BATCH = Number(process.env.REED_BENCH_METRICS_BATCH ?? 4_000);
const ROUNDS = Number(process.env.REED_BENCH_METRICS_ROUNDS ?? 60);
/**
 * Pairs of fresh children, one after the other. Within one pair the median of the rounds' ratios holds still, but
 * between pairs it moved 0.99-1.16x for the same code (7 runs of one pair, 2026-11-30, load ~2.7): how V8 compiled
 * each child's call path, for its whole life, differs from process to process. Pooling several pairs measures what
 * metrics cost rather than one pair's draw.
 */
const PAIRS = Number(process.env.REED_BENCH_METRICS_PAIRS ?? 5);
/** Calls each child makes before its first batch: V8 has optimized the call path by then. */
const WARM = Number(process.env.REED_BENCH_METRICS_WARM ?? 50_000);
const CALLGRIND = process.env.REED_BENCH_METRICS_CALLGRIND === '1';
const TARGET = 1.1;

interface Times {
  wall: number;
  cpu: number;
}

/** A child of metrics-child.ts (or valgrind running one): a batch for each line written, a line back for each. */
class Side {
  readonly #lines: AsyncIterator<string>;
  readonly #exited: Promise<number | null>;
  #stderr = '';
  readonly child: ReturnType<typeof spawn>;

  constructor(
    readonly mode: 'on' | 'off',
    command: string,
    args: string[],
  ) {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4096);
    });
    this.#exited = new Promise((resolve) => {
      child.on('error', () => resolve(-1));
      child.on('exit', (code) => resolve(code));
    });
    this.#lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  /** The child's next line (valgrind's own output goes to stderr). */
  async line(): Promise<string> {
    const next = await this.#lines.next();
    if (next.done === true)
      throw new Error(
        `the metrics ${this.mode} child exited (${await this.#exited}): ${this.#stderr.trim().split('\n').slice(-3).join(' ')}`,
      );
    return next.value;
  }

  async batch(): Promise<Times> {
    this.child.stdin?.write('\n');
    const [cpu, wall] = (await this.line()).split(' ').map(Number) as [number, number];
    return { cpu, wall };
  }

  async close(): Promise<void> {
    this.child.stdin?.end();
    if ((await this.#exited) !== 0) throw new Error(`the metrics ${this.mode} child failed: ${this.#stderr}`);
  }
}

/** The value at fraction `q` (0..1) of `values` sorted, interpolated. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo);
}

const spread = (ratios: number[]) =>
  `middle half ${fmt(quantile(ratios, 0.25), 3)}-${fmt(quantile(ratios, 0.75), 3)}, all ${fmt(Math.min(...ratios), 3)}-${fmt(Math.max(...ratios), 3)}`;

/** One pair of fresh children, off and on: `rounds` batches each, alternating; their times, off and on. */
async function runPair(rounds: number): Promise<{ onTimes: Times[]; offTimes: Times[] }> {
  const sides = (['off', 'on'] as const).map(
    (mode) => new Side(mode, process.execPath, [CHILD, mode, String(BATCH), String(WARM)]),
  ) as [Side, Side];
  try {
    for (const side of sides) if ((await side.line()) !== 'ready') throw new Error('metrics child not ready');
    const [offSide, onSide] = sides;
    const onTimes: Times[] = [];
    const offTimes: Times[] = [];
    for (let r = 0; r < rounds; r++) {
      const first = r % 2 === 0 ? offSide : onSide;
      const second = first === offSide ? onSide : offSide;
      const a = await first.batch();
      const b = await second.batch();
      const [without, withMetrics] = first === offSide ? [a, b] : [b, a];
      offTimes.push(without);
      onTimes.push(withMetrics);
      if (process.env.REED_BENCH_VERBOSE === '1')
        console.log(
          `  round ${String(r + 1).padStart(3)}: CPU off ${fmt(without.cpu, 3)} on ${fmt(withMetrics.cpu, 3)} us (${fmt(withMetrics.cpu / without.cpu, 3)}x), wall off ${fmt(without.wall, 3)} on ${fmt(withMetrics.wall, 3)} us`,
        );
    }
    for (const side of sides) await side.close();
    return { onTimes, offTimes };
  } finally {
    for (const side of sides) side.child.kill();
  }
}

export async function runMetricsBench(): Promise<boolean> {
  console.log(
    `\nmetrics cost: ${PAIRS} pairs of fresh children, ${ROUNDS} rounds of ${BATCH} calls each way a pair (order swapped every round), load ${fmt(loadavg()[0] as number, 1)} at the start`,
  );
  const onTimes: Times[] = [];
  const offTimes: Times[] = [];
  for (let p = 0; p < PAIRS; p++) {
    const pair = await runPair(ROUNDS);
    onTimes.push(...pair.onTimes);
    offTimes.push(...pair.offTimes);
    const ratios = pair.onTimes.map((t, i) => t.cpu / (pair.offTimes[i] as Times).cpu);
    console.log(`  pair ${p + 1}: CPU ratios median ${fmt(median(ratios), 3)}x, ${spread(ratios)}`);
  }
  const cpuRatios = onTimes.map((t, i) => t.cpu / (offTimes[i] as Times).cpu);
  const wallRatios = onTimes.map((t, i) => t.wall / (offTimes[i] as Times).wall);
  const cpuRatio = median(cpuRatios);
  const wallRatio = median(wallRatios);
  const sum = (times: Times[]) => times.reduce((s, t) => s + t.cpu, 0);
  console.log(`  CPU ratios: median ${fmt(cpuRatio, 3)}x, ${spread(cpuRatios)}`);
  console.log(`  CPU of all rounds, on over off: ${fmt(sum(onTimes) / sum(offTimes), 3)}x`);
  console.log(`  wall ratios: median ${fmt(wallRatio, 3)}x, ${spread(wallRatios)}`);
  console.log(`  load ${fmt(loadavg()[0] as number, 1)} at the end`);
  const met = cpuRatio <= TARGET;
  const rows: Row[] = [
    {
      figure: 'host.call() awaited, metrics on: CPU',
      value: `${fmt(median(onTimes.map((t) => t.cpu)), 3)} us`,
      baseline: `${fmt(median(offTimes.map((t) => t.cpu)), 3)} us metrics off`,
      ratio: `${fmt(cpuRatio, 3)}x (median of ${PAIRS * ROUNDS} rounds' ratios)`,
      target: `<= ${fmt(TARGET, 2)}x`,
      met,
    },
    {
      figure: 'host.call() awaited, metrics on: wall',
      value: `${fmt(median(onTimes.map((t) => t.wall)), 3)} us`,
      baseline: `${fmt(median(offTimes.map((t) => t.wall)), 3)} us metrics off`,
      ratio: `${fmt(wallRatio, 3)}x (median of ${PAIRS * ROUNDS} rounds' ratios)`,
      target: `(judged on a quiet machine: <= ${fmt(TARGET, 2)}x)`,
    },
  ];
  if (CALLGRIND) rows.push(await instructionsRow());
  printTable('Metrics cost (mode none, host.call awaited, 64 B echo)', rows);
  return met;
}

/**
 * Instructions per call on the main thread (the call path; V8's compiler and GC helper threads apart), off and on,
 * counted by callgrind in the two children at once, each running its batches on its own: the child calls
 * os.getPriority before each batch and after the last, and callgrind dumps its counts there (--dump-before), so each
 * dump after the warm-up's holds exactly one batch.
 */
async function instructionsRow(): Promise<Row> {
  const calls = Number(process.env.REED_BENCH_METRICS_CALLGRIND_CALLS ?? 10_000);
  const batches = Number(process.env.REED_BENCH_METRICS_CALLGRIND_BATCHES ?? 4);
  const warm = Number(process.env.REED_BENCH_METRICS_CALLGRIND_WARM ?? 20_000);
  const out = mkdtempSync(join(tmpdir(), 'reed-bench-metrics-ir-'));
  const sides: Side[] = [];
  try {
    const count = async (mode: 'on' | 'off'): Promise<number> => {
      const file = join(out, mode);
      const side = new Side(mode, 'valgrind', [
        '--tool=callgrind',
        '--separate-threads=yes',
        '--dump-before=getpriority',
        `--callgrind-out-file=${file}`,
        process.execPath,
        CHILD,
        mode,
        String(calls),
        String(warm),
        String(batches),
      ]);
      sides.push(side);
      if ((await side.line()) !== 'ready') throw new Error('metrics child not ready');
      for (let b = 0; b < batches; b++) await side.line();
      await side.close();
      // Dumps are numbered from 1, a file per thread (<file>.<n>-01 the main thread's): dump 1 ends the warm-up,
      // dump n + 1 holds batch n.
      const perBatch: number[] = [];
      for (let n = 2; n <= batches + 1; n++) {
        const totals = /^totals: (\d+)/m.exec(readFileSync(`${file}.${n}-01`, 'utf8'));
        if (totals === null) throw new Error(`no totals in ${file}.${n}-01`);
        perBatch.push(Number(totals[1]) / calls);
      }
      return median(perBatch);
    };
    const [off, on] = await Promise.all([count('off'), count('on')]);
    return {
      figure: 'instructions per call, main thread (callgrind)',
      value: `${fmt(on)} metrics on`,
      baseline: `${fmt(off)} metrics off`,
      ratio: `${fmt(on / off, 3)}x (+${fmt(on - off)}; medians of ${batches} batches of ${calls})`,
      target: '(exact whatever the load)',
    };
  } catch (error) {
    return {
      figure: 'instructions per call (callgrind)',
      value: `not counted: ${(error as Error).message.slice(0, 300)}`,
      baseline: '',
      ratio: '',
      target: '',
    };
  } finally {
    for (const side of sides) side.child.kill();
    rmSync(out, { recursive: true, force: true });
  }
}
