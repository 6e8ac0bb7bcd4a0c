// Tenants (issue 14): tenant B's call latency while tenant A saturates its quotas, against B alone, in one run.
// One TenantRegistry (the library, not serve: the quotas are enforced in the core, and the API's own cost is the
// api bench's figure; through HTTP the client's and the server's parsing would take the same two cores and blur
// what the tenant layer does) with tenants a and b declared in reed.toml, each with the same mode none plugin
// (bench.load, C built here with clang --target=wasm32-wasi: echo, spin, grow) and the same quotas.
// Phase "alone": B makes CALLS calls, one due each millisecond; phase "contended": the same while A's callers hammer every
// quota A has (echo past its calls per second and concurrency, spin past its fuel per second, grow past its
// memory). The phases alternate ROUNDS times after a warm-up; the figures are medians over rounds.
// Beside each phase, the host process's CPU time per second of it (wall-clock on a shared machine mostly measures the
// other processes; judge the ratio on a quiet one, with the load average printed at the end).
// Target: B's p99 contended at most 1.5x B's p99 alone. Then the same in process mode (each tenant's runners under
// its cgroup, cpu_weight instead of fuel; A's memory is not saturated there). REED_BENCH_TENANTS_MODE=process runs
// only that one.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { delimiter, join, sep } from 'node:path';
import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { ReedError } from '../src/errors.js';
import { subscribeEvent } from '../src/events/events.js';
import { loadHostConfig } from '../src/host/host-config.js';
import { MemoryStorage } from '../src/host/services.js';
import { TenantRegistry } from '../src/tenants/registry.js';
import type { Tenant } from '../src/tenants/tenant.js';
import { PROMPT_REFUSALS_PER_SECOND, TenantHost, TURN_SLICE_MS } from '../src/tenants/tenant-host.js';
import { fmt, median, printTable } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** B's calls per phase (one due each millisecond: B stays within its quotas), and how many callers make them. */
const CALLS = 2_000;
const B_CONCURRENCY = 4;
const ROUNDS = 5;
/** A's callers: most echo, some spin, some grow. */
const A_MIX: Mix = { echo: 24, spin: 6, grow: 2 };
/** Then each kind of A's callers on its own, to say which of A's quotas costs B what (fewer rounds). */
const BREAKDOWN_ROUNDS = 3;
const TARGET = 1.5;

type Mix = Record<'echo' | 'spin' | 'grow', number>;
type Mode = 'none' | 'process';

/**
 * The same quotas for both tenants. fuel_per_second is mode none's CPU share; in process mode the tenant's cgroup
 * gives cpu_weight, and memory_mb counts each runner's Node too (A's memory is not saturated there: that is an OOM
 * kill and a restart, a test's matter, see test/integration/tenant-resources-*).
 */
const QUOTAS: Record<Mode, Record<string, number>> = {
  none: { max_concurrent_calls: 16, calls_per_second: 5_000, fuel_per_second: 20_000_000, memory_mb: 8 },
  process: { max_concurrent_calls: 16, calls_per_second: 5_000, cpu_weight: 100, memory_mb: 1_024 },
};

/** A's callers: most echo, some spin, some grow (mode none: past memory_mb). */
const MIXES: Record<Mode, Mix> = { none: A_MIX, process: { echo: 24, spin: 6, grow: 0 } };

const SOURCE = `
#include <stdint.h>
#include "reed_wasm.h"
static char buf[4096];
static volatile uint64_t sink;
REED_EXPORT(echo) int32_t echo(void) {
  int32_t n = reed_input_read(buf, sizeof buf, 0);
  reed_output_write(buf, n);
  return 0;
}
/* Burns fuel: 200,000 loop iterations (well under a millisecond). */
REED_EXPORT(spin) int32_t spin(void) {
  for (uint32_t i = 0; i < 200000; i++) sink += i;
  return 0;
}
/* Grows the memory by 1 MiB; traps when the grow is refused (the tenant's memory_mb), as a failed malloc would. */
REED_EXPORT(grow) int32_t grow(void) {
  if (__builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1) __builtin_trap();
  return 0;
}
`;

/** clang without node_modules/.bin on the PATH (binaryen's wasm-opt there would rewrite the module). */
function buildPlugin(dir: string): Buffer {
  const c = join(dir, 'load.c');
  const out = join(dir, 'load.wasm');
  writeFileSync(c, SOURCE);
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((p) => !p.includes(`node_modules${sep}.bin`))
    .join(delimiter);
  execFileSync(
    'clang',
    ['--target=wasm32-wasi', '-O2', '-mexec-model=reactor', '-I', join(REPO, 'include'), '-o', out, c],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, PATH: path },
    },
  );
  return readFileSync(out);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** What B's callers saw in one phase, microseconds, sorted: from its due time and from the call, to the answer. */
interface Phase {
  due: number[];
  call: number[];
  /** From due to the call's start: the host's thread busy (or the process not running) when the call was due. */
  start: number[];
  /** The process's CPU time (user + system, all its threads) over the phase, per second of the phase, ms. */
  cpuMsPerS: number;
  /**
   * The host's main thread over the phase, ms per second of it (Linux's schedstat; NaN elsewhere): on a CPU, and
   * waiting for one while runnable (the machine's other processes, or the runners, had the cores).
   */
  threadRunMsPerS: number;
  threadWaitMsPerS: number;
  /** Due to answer of the calls whose wait overlapped no garbage collection pause (sorted, us). */
  dueNoGc: number[];
  /** The garbage collection pauses of the host's thread during the phase (see gcPauses). */
  gc: GcCount;
}

/** The main thread's time on a CPU and waiting for one, ns (/proc/self/task/<pid>/schedstat), or NaNs. */
function threadSched(): [number, number] {
  try {
    const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
    return [Number(run), Number(wait)];
  } catch {
    return [Number.NaN, Number.NaN];
  }
}

/** Pauses of the host's thread for garbage collection: minor (scavenges) and major (mark-compact, its finalization). */
interface GcCount {
  minor: number;
  major: number;
  /** Their total and the longest, ms. */
  ms: number;
  maxMs: number;
}

/**
 * The garbage collections while `run` runs (the host's one thread stops for them, whoever allocated), to tell B's
 * slow calls that waited for one from those that waited for A's calls. Diagnostic only: the figures judged are
 * unchanged.
 */
async function withGc<T>(run: () => Promise<T>): Promise<{ result: T; pauses: [number, number, number][] }> {
  const pauses: [number, number, number][] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push([e.startTime, e.duration, gcKind(e)]);
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const result = await run();
    // Entries are delivered in a later turn: those of the phase's last calls are taken here.
    for (const e of observer.takeRecords()) pauses.push([e.startTime, e.duration, gcKind(e)]);
    return { result, pauses };
  } finally {
    observer.disconnect();
  }
}

/** The kind of a 'gc' entry (its detail: Node's types leave it out of PerformanceEntry). */
const gcKind = (e: PerformanceEntry): number =>
  (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0;

function gcCount(pauses: [number, number, number][]): GcCount {
  const c: GcCount = { minor: 0, major: 0, ms: 0, maxMs: 0 };
  for (const [, ms, kind] of pauses) {
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) c.minor++;
    else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) c.major++;
    c.ms += ms;
    c.maxMs = Math.max(c.maxMs, ms);
  }
  return c;
}

/**
 * B's load: CALLS echo calls, one due every millisecond (1,000 a second, within B's quotas), made by B_CONCURRENCY
 * callers in turn. Mode none runs a call on the host's thread to its end, so a call's own time hardly moves while
 * A's spins hold that thread: what A costs B is the wait for the thread. The latency is therefore taken from when
 * the call was due (its timer's time, late by however long the thread was held) to the answer; the time from the
 * call to the answer is printed beside it.
 */
async function loadB(b: Tenant, input: Uint8Array, refused: Map<string, number>): Promise<Phase> {
  const due: number[] = [];
  const call: number[] = [];
  const start: number[] = [];
  /** Each answered call's due time and answer time (ms), for the garbage collections it waited for. */
  const windows: number[] = [];
  const cpu0 = process.cpuUsage();
  const sched0 = threadSched();
  const t0 = performance.now() + 1;
  const caller = async (_: unknown, first: number) => {
    for (let k = first; k < CALLS; k += B_CONCURRENCY) {
      const at = t0 + k;
      const wait = at - performance.now();
      if (wait > 1) await sleep(wait - 1);
      // Node's timers count whole milliseconds of the loop's clock and may fire before `at`: the rest by turns.
      while (performance.now() < at) await yieldToLoop();
      const t = performance.now();
      try {
        await b.call('bench.load', 'echo', input);
        const end = performance.now();
        due.push((end - at) * 1000);
        call.push((end - t) * 1000);
        start.push((t - at) * 1000);
        windows.push(at, end);
      } catch (error) {
        const key = error instanceof ReedError ? String(error.details?.quota ?? error.code) : 'other';
        refused.set(key, (refused.get(key) ?? 0) + 1);
      }
    }
  };
  const { pauses } = await withGc(() => Promise.all(Array.from({ length: B_CONCURRENCY }, caller)));
  const cpu = process.cpuUsage(cpu0);
  const sched = threadSched();
  const phaseMs = performance.now() - t0 + 1;
  const cpuMsPerS = (cpu.user + cpu.system) / phaseMs;
  const threadRunMsPerS = (sched[0] - sched0[0]) / 1e3 / phaseMs;
  const threadWaitMsPerS = (sched[1] - sched0[1]) / 1e3 / phaseMs;
  const dueNoGc: number[] = [];
  for (let i = 0; i < windows.length; i += 2) {
    const from = windows[i] as number;
    const to = windows[i + 1] as number;
    if (!pauses.some(([start, ms]) => start < to && start + ms > from)) dueNoGc.push((to - from) * 1000);
  }
  return {
    due: due.sort((x, y) => x - y),
    call: call.sort((x, y) => x - y),
    start: start.sort((x, y) => x - y),
    cpuMsPerS,
    threadRunMsPerS,
    threadWaitMsPerS,
    dueNoGc: dueNoGc.sort((x, y) => x - y),
    gc: gcCount(pauses),
  };
}

/** A's callers until stopped: each calls again at once after an answer, after a turn of the loop after a refusal. */
function saturateA(a: Tenant, input: Uint8Array, mix: Mix, counts: Map<string, number>) {
  let stop = false;
  const caller = (fn: string) => async () => {
    while (!stop) {
      try {
        await a.call('bench.load', fn, input);
        counts.set(`${fn} ok`, (counts.get(`${fn} ok`) ?? 0) + 1);
      } catch (error) {
        const key =
          error instanceof ReedError && error.code === 'quota_exceeded'
            ? `refused ${String(error.details?.quota)}`
            : `failed ${error instanceof ReedError ? error.code : 'other'}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        // A refusal answers without a turn of the event loop; a client resending at once over a socket could not.
        await yieldToLoop();
      }
    }
  };
  const callers = Object.entries(mix).flatMap(([fn, n]) => Array.from({ length: n }, caller(fn)));
  return async () => {
    stop = true;
    await Promise.all(callers);
  };
}

interface Figures {
  p50: number;
  p99: number;
  callP50: number;
  callP99: number;
  startP50: number;
  startP99: number;
  cpuMsPerS: number;
  threadRunMsPerS: number;
  threadWaitMsPerS: number;
  p99NoGc: number;
  gc: GcCount;
}

const figures = (phase: Phase): Figures => ({
  p50: percentile(phase.due, 50),
  p99: percentile(phase.due, 99),
  callP50: percentile(phase.call, 50),
  callP99: percentile(phase.call, 99),
  startP50: percentile(phase.start, 50),
  startP99: percentile(phase.start, 99),
  cpuMsPerS: phase.cpuMsPerS,
  threadRunMsPerS: phase.threadRunMsPerS,
  threadWaitMsPerS: phase.threadWaitMsPerS,
  p99NoGc: phase.dueNoGc.length === 0 ? 0 : percentile(phase.dueNoGc, 99),
  gc: phase.gc,
});

interface Rounds {
  alone: Figures[];
  contended: Figures[];
  /** Median over rounds of B's p99 (due to answer) contended and alone, and their ratio. */
  p99Alone: number;
  p99Busy: number;
  ratio: number;
}

/** `rounds` pairs of phases: B alone, then B while A's callers of `mix` run. */
async function measure(
  a: Tenant,
  b: Tenant,
  input: Uint8Array,
  mix: Mix,
  rounds: number,
  countsA: Map<string, number>,
  refusedB: Map<string, number>,
): Promise<Rounds> {
  const alone: Figures[] = [];
  const contended: Figures[] = [];
  for (let r = 0; r < rounds; r++) {
    alone.push(figures(await loadB(b, input, refusedB)));
    const stopA = saturateA(a, input, mix, countsA);
    const busy = await loadB(b, input, refusedB);
    await stopA();
    contended.push(figures(busy));
  }
  const p99Alone = median(alone.map((x) => x.p99));
  const p99Busy = median(contended.map((x) => x.p99));
  return { alone, contended, p99Alone, p99Busy, ratio: p99Busy / p99Alone };
}

/** Medians over rounds of the phases' garbage collections (see GcCount). */
function gcFigures(phases: Figures[]): string {
  const m = (f: (c: GcCount) => number) => median(phases.map((x) => f(x.gc)));
  return `${fmt(m((c) => c.minor))} / ${fmt(m((c) => c.major))}, ${fmt(
    m((c) => c.ms),
    1,
  )} / ${fmt(
    m((c) => c.maxMs),
    1,
  )}`;
}

export async function runTenantsBench(): Promise<boolean> {
  const only = process.env.REED_BENCH_TENANTS_MODE;
  if (only === 'process' || only === 'none') return runMode(only);
  const none = await runMode('none');
  const inProcessMode = await runMode('process');
  return none && inProcessMode;
}

async function runMode(mode: Mode): Promise<boolean> {
  const mix = MIXES[mode];
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-tenants-'));
  // Process mode's runners run as other uids: they must pass through it to their sockets.
  chmodSync(dir, 0o755);
  try {
    const wasm = buildPlugin(dir);
    for (const t of ['a', 'b']) {
      const plugin = join(dir, `plugins-${t}`, 'load');
      mkdirSync(plugin, { recursive: true });
      writeFileSync(join(plugin, 'plugin.wasm'), wasm);
      writeFileSync(
        join(plugin, 'plugin.toml'),
        '[metadata]\nid = "bench.load"\nname = "bench.load"\nversion = "1.0.0"\napi_version = "1.0.0"\n' +
          `[limits]\nmemory_mb = 16\n[sandbox]\nmode = "${mode}"\n`,
      );
    }
    const quotas = Object.entries(QUOTAS[mode])
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n');
    writeFileSync(
      join(dir, 'reed.toml'),
      'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n' +
        `[tenants.a]\nplugin_dirs = ["plugins-a"]\n[tenants.a.quotas]\n${quotas}\n` +
        `[tenants.b]\nplugin_dirs = ["plugins-b"]\n[tenants.b.quotas]\n${quotas}\n`,
    );
    const config = loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [], defaultSearchPaths: false },
    });
    // What isolation did not hold for the runners (process mode: the tenant cgroups need root and cgroupfs).
    const notEnforced = new Set<string>();
    const unsubscribe = subscribeEvent('reed:sandbox:started', (e) => {
      for (const what of e.notEnforced) notEnforced.add(what);
    });
    const registry = await TenantRegistry.start({
      config,
      forceMode: mode,
      logger: pino({ level: 'silent' }),
      storage: () => new MemoryStorage(),
      audit: false,
    });
    try {
      const a = registry.get('a');
      const b = registry.get('b');
      if (a === undefined || b === undefined) throw new Error('tenants a and b did not start');
      const input = new Uint8Array(64).fill(120);
      const spin = await a.call('bench.load', 'spin');
      const refusedB = new Map<string, number>();
      const countsA = new Map<string, number>();
      await loadB(b, input, refusedB);
      const { alone, contended, p99Alone, p99Busy, ratio } = await measure(
        a,
        b,
        input,
        mix,
        ROUNDS,
        countsA,
        refusedB,
      );
      const ratios = alone.map((x, i) => (contended[i] as Figures).p99 / x.p99);
      const med = (phases: Figures[], key: Exclude<keyof Figures, 'gc'>) =>
        fmt(median(phases.map((x) => x[key])));
      printTable(
        `Tenants (mode ${mode}, TenantRegistry; B: ${CALLS} echo calls of 64 B a phase, one due each ms, ${B_CONCURRENCY} callers; ${ROUNDS} rounds)`,
        [
          {
            figure: "B's p50, due to answer, A saturating",
            value: `${med(contended, 'p50')} us`,
            baseline: `${med(alone, 'p50')} us B alone`,
            ratio: '',
            target: '',
          },
          {
            figure: "B's p99, due to answer, A saturating",
            value: `${fmt(p99Busy)} us`,
            baseline: `${fmt(p99Alone)} us B alone`,
            ratio: `${fmt(ratio, 2)}x (rounds: ${ratios.map((x) => fmt(x, 2)).join(', ')})`,
            target: `<= ${TARGET}x`,
            met: ratio <= TARGET,
          },
          {
            figure: "B's p50 / p99, call to answer, A saturating",
            value: `${med(contended, 'callP50')} / ${med(contended, 'callP99')} us`,
            baseline: `${med(alone, 'callP50')} / ${med(alone, 'callP99')} us B alone`,
            ratio: '',
            target: '',
          },
          {
            figure: "B's p50 / p99, due to the call's start (the host's thread busy)",
            value: `${med(contended, 'startP50')} / ${med(contended, 'startP99')} us`,
            baseline: `${med(alone, 'startP50')} / ${med(alone, 'startP99')} us B alone`,
            ratio: '',
            target: '',
          },
          {
            figure: 'host process CPU, ms per s of phase (all threads)',
            value: `${med(contended, 'cpuMsPerS')} A saturating`,
            baseline: `${med(alone, 'cpuMsPerS')} B alone`,
            ratio: '',
            target: '',
          },
          {
            figure: "host's main thread, ms per s of phase: on a CPU / runnable, waiting for one",
            value: `${med(contended, 'threadRunMsPerS')} / ${med(contended, 'threadWaitMsPerS')} A saturating`,
            baseline: `${med(alone, 'threadRunMsPerS')} / ${med(alone, 'threadWaitMsPerS')} B alone`,
            ratio: '',
            target: '',
          },
          {
            figure: "B's p99, due to answer, of its calls that waited for no GC pause",
            value: `${med(contended, 'p99NoGc')} us`,
            baseline: `${med(alone, 'p99NoGc')} us B alone`,
            ratio: `${fmt(median(contended.map((x) => x.p99NoGc)) / median(alone.map((x) => x.p99NoGc)), 2)}x`,
            target: '',
          },
          {
            figure: 'GC pauses of a phase: minor / major, total / longest ms',
            value: `${gcFigures(contended)} A saturating`,
            baseline: `${gcFigures(alone)} B alone`,
            ratio: '',
            target: '',
          },
        ],
      );
      const calls = [...countsA.entries()].sort(([x], [y]) => x.localeCompare(y));
      console.log(
        `\nquotas of each tenant: ${JSON.stringify(QUOTAS[mode])}; one spin: ${fmt(spin.stats.fuelConsumed)} fuel`,
      );
      console.log(
        `A's calls over the ${ROUNDS} contended phases (${mix.echo} echo, ${mix.spin} spin, ${mix.grow} grow callers): ${calls.map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`,
      );
      if (a instanceof TenantHost)
        console.log(
          `A's calls started in a later turn of the event loop (past its ${TURN_SLICE_MS} ms slice of a turn), all phases so far: ${fmt(a.deferredCalls)}; A's refusals held (answered a few milliseconds later, past ${PROMPT_REFUSALS_PER_SECOND} a second): ${fmt(a.heldRefusals)}`,
        );
      const rows = [];
      for (const fn of (['echo', 'spin', 'grow'] as const).filter((f) => mix[f] > 0)) {
        const counts = new Map<string, number>();
        const r = await measure(
          a,
          b,
          input,
          { echo: 0, spin: 0, grow: 0, [fn]: mix[fn] },
          BREAKDOWN_ROUNDS,
          counts,
          refusedB,
        );
        rows.push({
          figure: `B's p50 / p99 while A's ${mix[fn]} ${fn} callers run alone (CPU ms/s)`,
          value: `${fmt(median(r.contended.map((x) => x.p50)))} / ${fmt(r.p99Busy)} us (${fmt(median(r.contended.map((x) => x.cpuMsPerS)))})`,
          baseline: `${fmt(median(r.alone.map((x) => x.p50)))} / ${fmt(r.p99Alone)} us B alone (${fmt(median(r.alone.map((x) => x.cpuMsPerS)))})`,
          ratio: `${fmt(r.ratio, 2)}x`,
          target: '',
        });
        console.log(
          `A's ${fn} callers alone: ${[...counts.entries()].map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`,
        );
      }
      printTable(
        `Tenants (mode ${mode}): which of A's loads costs B (${BREAKDOWN_ROUNDS} rounds each)`,
        rows,
      );
      console.log(
        `B's refused calls: ${refusedB.size === 0 ? 'none' : [...refusedB.entries()].map(([k, v]) => `${k} ${v}`).join(', ')}`,
      );
      if (mode === 'process')
        console.log(
          `runners' isolation not enforced: ${notEnforced.size === 0 ? 'none (tenant cgroups in force)' : [...notEnforced].join('; ')}`,
        );
      console.log(
        `load average: ${loadavg()
          .map((x) => fmt(x, 2))
          .join(' ')}`,
      );
      return ratio <= TARGET && refusedB.size === 0;
    } finally {
      await registry.close();
      unsubscribe();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
