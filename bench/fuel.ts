// What fuel metering costs: real CPU-bound programs written in C (bench/fixtures/fuel/, built here with clang
// --target=wasm32-wasi -O2) and the micro loop (bench/fixtures/cpu.wat), each prepared twice from the same bytes,
// fuel on and fuel off, and run in alternation in one process. Times are wall-clock and this process's CPU time
// (steadier than wall-clock on a shared machine); the overhead is the median over repetitions of each metered
// run's time over the plain run beside it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FUEL_EXPORT, prepareModule } from '../src/runtime/wasm/prepare-module.js';
import { fmt, median, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const WARMUP = 3;
const REPS = 9;
/** Enough fuel for any run here; set again before each. */
const BUDGET = 10n ** 15n;
const TARGET = 0.3;

interface Program {
  name: string;
  /** What one run does. */
  what: string;
  /** bench/fixtures/fuel/NAME.c, or a prebuilt module. */
  source: { c: string } | { wasm: string };
  /** The argument of one run. */
  n: number;
  /** Checks the plain build's last run against another implementation (once, after warming up). */
  verify?: (exports: WebAssembly.Exports, memory: Uint8Array) => void;
}

const PROGRAMS: Program[] = [
  {
    name: 'sha256',
    what: 'SHA-256 of 4 MiB, 3 passes',
    source: { c: 'sha256' },
    n: 3,
    verify: (e, memory) => {
      const data = memory.subarray((e.data as () => number)(), (e.data as () => number)() + 4 * 2 ** 20);
      const ours = memory.subarray((e.digest as () => number)(), (e.digest as () => number)() + 32);
      const theirs = createHash('sha256').update(data).digest();
      if (!theirs.equals(ours)) throw new Error('sha256: the digest differs from node:crypto');
    },
  },
  { name: 'sort', what: 'quicksort + mergesort of 2^20 ints', source: { c: 'sort' }, n: 1 },
  {
    name: 'json',
    what: 'parse a 1 MiB JSON document, 12 times',
    source: { c: 'json' },
    n: 12,
    verify: (e, memory) => {
      const at = (e.doc as () => number)();
      const text = Buffer.from(memory.subarray(at, at + (e.doc_len as () => number)())).toString();
      const nodes = (value: unknown): number =>
        value !== null && typeof value === 'object'
          ? 1 +
            Object.entries(value).reduce((sum, [, v]) => sum + nodes(v) + (Array.isArray(value) ? 0 : 1), 0)
          : 1;
      // The parser's node count: every value and every key, and node 0 ("none").
      if ((e.count as () => number)() !== nodes(JSON.parse(text)) + 1)
        throw new Error('json: the parse differs from JSON.parse');
    },
  },
  { name: 'lz77', what: 'LZ77 compress + decompress 1 MiB, twice', source: { c: 'lz77' }, n: 2 },
  { name: 'regex', what: '10 backtracking patterns over 256 KiB of lines', source: { c: 'regex' }, n: 1 },
  {
    name: 'micro loop',
    what: 'xorshift + byte hash, 20M iterations',
    source: { wasm: 'cpu' },
    n: 20_000_000,
  },
];

/** One build of a program: its `run` and, when metered, its fuel global. */
interface Build {
  run: (n: number) => number;
  fuel: WebAssembly.Global | undefined;
  exports: WebAssembly.Exports;
  memory: () => Uint8Array;
}

function build(bytes: Uint8Array, fuel: boolean): Build {
  const prepared = prepareModule(bytes, {
    fuel,
    initialFuel: BUDGET,
    memoryCapPages: 1024,
    tableCapElements: 1024,
  });
  const instance = new WebAssembly.Instance(new WebAssembly.Module(prepared.bytes), {});
  const e = instance.exports;
  (e._initialize as (() => void) | undefined)?.();
  const exported = (e.run ?? e.work) as (n: number) => number;
  return {
    run: (n) => exported(n) >>> 0,
    fuel: e[FUEL_EXPORT] as WebAssembly.Global | undefined,
    exports: e,
    memory: () => new Uint8Array((e.memory as WebAssembly.Memory).buffer),
  };
}

interface Times {
  wall: number[];
  cpu: number[];
}

/** One run, timed; returns its answer. */
function timed(b: Build, n: number, into: Times): number {
  if (b.fuel !== undefined) b.fuel.value = BUDGET;
  const cpu = process.cpuUsage();
  const t = performance.now();
  const answer = b.run(n);
  into.wall.push(performance.now() - t);
  const used = process.cpuUsage(cpu);
  into.cpu.push((used.user + used.system) / 1000);
  return answer;
}

/** The median over repetitions of metered / plain - 1, each pair run one after the other. */
const overhead = (metered: number[], plain: number[]) =>
  median(metered.map((m, i) => m / (plain[i] as number))) - 1;
const pct = (x: number) => `${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} %`;

function measure(p: Program, bytes: Uint8Array): Row {
  const metered = build(bytes, true);
  const plain = build(bytes, false);
  const m: Times = { wall: [], cpu: [] };
  const b: Times = { wall: [], cpu: [] };
  for (let i = 0; i < WARMUP; i++) {
    if (timed(metered, p.n, { wall: [], cpu: [] }) !== timed(plain, p.n, { wall: [], cpu: [] }))
      throw new Error(`${p.name}: the metered build answered differently`);
  }
  p.verify?.(plain.exports, plain.memory());
  for (let i = 0; i < REPS; i++) {
    // Alternate which goes first, so that neither always runs on the warmer machine.
    if (i % 2 === 0) {
      timed(plain, p.n, b);
      timed(metered, p.n, m);
    } else {
      timed(metered, p.n, m);
      timed(plain, p.n, b);
    }
  }
  const wall = overhead(m.wall, b.wall);
  const cpu = overhead(m.cpu, b.cpu);
  const minMed = (t: number[]) => `${fmt(median(t), 1)} / ${fmt(Math.min(...t), 1)} ms`;
  return {
    figure: `fuel: ${p.name} (${p.what})`,
    value: minMed(m.wall),
    baseline: `${minMed(b.wall)} uninstrumented`,
    ratio: `${pct(wall)} (CPU ${pct(cpu)})`,
    target: `<= +${TARGET * 100} %`,
    met: wall <= TARGET,
  };
}

/**
 * The fuel suite: one row per program, its metered run's median / min wall-clock time beside the uninstrumented
 * one's, and the overhead in wall-clock and CPU time. Builds the C programs with clang (a missing clang fails
 * the bench, as it would fail the build).
 */
export function fuelSuite(): Row[] {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-fuel-'));
  try {
    return PROGRAMS.map((p) => {
      let file: string;
      if ('c' in p.source) {
        file = join(dir, `${p.source.c}.wasm`);
        execFileSync('clang', [
          '--target=wasm32-wasi',
          '-O2',
          '-Wall',
          '-Werror',
          '-mexec-model=reactor',
          '-o',
          file,
          join(REPO, 'bench/fixtures/fuel', `${p.source.c}.c`),
        ]);
      } else file = join(REPO, 'bench/fixtures', `${p.source.wasm}.wasm`);
      return measure(p, readFileSync(file));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
