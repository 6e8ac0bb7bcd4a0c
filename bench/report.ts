/** Shared by every benchmark: timing helpers and the printed table of figures, baselines and ratios. */
import { readdirSync, readFileSync } from 'node:fs';

export interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
  /** Whether the target holds; undefined for figures without a target. */
  met?: boolean;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Runs `fn` once to warm up, then `runs` times, alternating with `baseline` so both see the same machine. */
export function interleave(
  runs: number,
  fn: () => void,
  baseline: () => void,
): { ours: number[]; base: number[] } {
  fn();
  baseline();
  const ours: number[] = [];
  const base: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    baseline();
    base.push(performance.now() - t);
    t = performance.now();
    fn();
    ours.push(performance.now() - t);
  }
  return { ours, base };
}

export function printTable(title: string, rows: Row[]): void {
  const header = ['figure', 'value', 'baseline', 'ratio', 'target', 'met'];
  const cells = rows.map((r) => [
    r.figure,
    r.value,
    r.baseline,
    r.ratio,
    r.target,
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) =>
    c
      .map((x, i) => x.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  console.log(`\n## ${title}\n`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
}

export const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Median over batches of the mean time per call, in microseconds, after a warm-up batch. */
export function perCall(fn: () => void, batches = 25, size = 20_000): number {
  for (let i = 0; i < size; i++) fn();
  const means: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t = performance.now();
    for (let i = 0; i < size; i++) fn();
    means.push(((performance.now() - t) * 1000) / size);
  }
  return median(means);
}

/**
 * Like {@link perCall}, with this process's CPU time per call beside the wall-clock time (steadier on a shared
 * machine, where another process can take the CPU in the middle of a batch).
 */
export function perCallTimes(fn: () => void, batches = 25, size = 20_000): { wall: number; cpu: number } {
  for (let i = 0; i < size; i++) fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let b = 0; b < batches; b++) {
    const c = process.cpuUsage();
    const t = performance.now();
    for (let i = 0; i < size; i++) fn();
    wall.push(((performance.now() - t) * 1000) / size);
    const used = process.cpuUsage(c);
    cpu.push((used.user + used.system) / size);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

/** CPU time (ns) the kernel has run every thread of `pids` for (Linux's schedstat; a thread that ended is not counted). */
export function threadsCpuNs(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      for (const task of readdirSync(`/proc/${pid}/task`))
        total += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
