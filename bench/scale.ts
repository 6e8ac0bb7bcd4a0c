import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from './discovery.js';
import { fmt, median, printTable } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PLUGINS = 10_000;
const ROUNDS = 3;
const TARGET_START_MS = 5_000;
const TARGET_RSS = 1024 * 1024 * 1024;

interface Sample {
  ms: number;
  cpuMs: number;
  ready: number;
  rss: number;
  maxRss: number;
  heapUsed: number;
}

/**
 * Mode none at scale (issue 16): one host starting on 10,000 tiny WASM plugins (the discovery bench's generator:
 * a realistic manifest and an empty module each), every one loaded and initialised. Each start in a fresh process,
 * alternating with the baseline, the same process only discovering and validating the same plugins (what any host
 * start costs before it loads anything). Targets: start under 5 s, RSS under 1 GiB.
 */
export function runScaleBench(): boolean {
  const root = mkdtempSync(join(tmpdir(), 'reed-bench-scale-'));
  try {
    generate(root, PLUGINS);
    const child = join(REPO, 'dist/bench/scale-child.js');
    const run = (what: 'host' | 'scan'): Sample => {
      const r = spawnSync(process.execPath, ['--expose-gc', child, what, root], {
        encoding: 'utf8',
        maxBuffer: 1024 * 1024,
      });
      if (r.status !== 0) throw new Error(`scale-child ${what} failed: ${r.stderr}`);
      const sample = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Sample;
      if (sample.ready !== PLUGINS) throw new Error(`${what}: ${sample.ready} of ${PLUGINS} plugins ready`);
      return sample;
    };
    const host: Sample[] = [];
    const scan: Sample[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      scan.push(run('scan'));
      host.push(run('host'));
    }
    const m = (samples: Sample[], key: keyof Sample) => median(samples.map((s) => s[key]));
    const mib = (bytes: number) => `${fmt(bytes / 2 ** 20)} MiB`;
    const startMs = m(host, 'ms');
    const peak = m(host, 'maxRss');
    const startMet = startMs < TARGET_START_MS;
    const rssMet = peak < TARGET_RSS;
    printTable(
      `scale: mode none, one host starting on ${fmt(PLUGINS)} plugins (median of ${ROUNDS}, fresh processes)`,
      [
        {
          figure: 'host start, every plugin ready',
          value: `${fmt(startMs)} ms (CPU ${fmt(m(host, 'cpuMs'))} ms)`,
          baseline: `${fmt(m(scan, 'ms'))} ms (CPU ${fmt(m(scan, 'cpuMs'))} ms) discovery + validation only`,
          ratio: `${fmt(startMs / m(scan, 'ms'), 2)}x`,
          target: `< ${fmt(TARGET_START_MS)} ms`,
          met: startMet,
        },
        {
          figure: 'peak RSS',
          value: mib(peak),
          baseline: mib(m(scan, 'maxRss')),
          ratio: `${fmt((peak - m(scan, 'maxRss')) / 1024 / PLUGINS, 1)} KiB per plugin more`,
          target: '< 1,024 MiB',
          met: rssMet,
        },
        {
          figure: 'RSS, heap after start (full GC)',
          value: `${mib(m(host, 'rss'))}, heap ${mib(m(host, 'heapUsed'))}`,
          baseline: `${mib(m(scan, 'rss'))}, heap ${mib(m(scan, 'heapUsed'))}`,
          ratio: `${fmt((m(host, 'heapUsed') - m(scan, 'heapUsed')) / 1024 / PLUGINS, 1)} KiB heap per plugin more`,
          target: '',
        },
      ],
    );
    return startMet && rssMet;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
