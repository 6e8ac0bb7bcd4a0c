import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverPlugins } from '../src/discovery/discover.js';
import { closeParallelWorkers, lastParallelRun } from '../src/discovery/parallel.js';
import { loadHostConfig, validationContext } from '../src/host/host-config.js';
import { validatePlugins } from '../src/validation/validator.js';
import { fmt, median, printTable } from './report.js';

const PLUGINS = 10_000;
const RUNS = 5;
const TARGET_PER_SECOND = 10_000;

/** Writes `count` plugin directories, each a realistic manifest and a small module; a few depend on others. */
export function generate(root: string, count: number): void {
  const wasm = Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  for (let i = 0; i < count; i++) {
    const dir = join(root, `plugin-${String(i).padStart(5, '0')}`);
    mkdirSync(dir);
    const dependency =
      i > 0 && i % 10 === 0
        ? `\n[[requirements.dependencies]]\nid = "bench.plugin-${i - 1}"\nversion = "^1.0"\n`
        : '';
    writeFileSync(
      join(dir, 'plugin.toml'),
      `[metadata]
id = "bench.plugin-${i}"
name = "Benchmark plugin ${i}"
version = "1.0.${i % 50}"
api_version = "1.0.0"
priority = ${i % 200}
description = "A generated plugin for the discovery benchmark."
authors = ["Bench <bench@example.com>"]
license = "MIT"

[requirements]
capabilities = ["storage"]
${dependency}
[permissions]
storage = "readwrite"
log = true

[permissions.events]
emit = ["bench.*"]

[limits]
memory_mb = 32
call_timeout_ms = 1000

[configuration]
greeting = "hello"
items = [1, 2, 3]
`,
    );
    writeFileSync(join(dir, 'plugin.wasm'), wasm);
  }
}

/** This thread's CPU time in ms (Linux: /proc/thread-self/schedstat), or undefined where it cannot be read. */
function threadCpuMs(): number | undefined {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return undefined;
  }
}

export function runDiscoveryBench(): boolean {
  const root = mkdtempSync(join(tmpdir(), 'reed-bench-discovery-'));
  try {
    generate(root, PLUGINS);
    const config = loadHostConfig({
      cwd: root,
      env: {},
      overrides: { pluginDirs: [root], defaultSearchPaths: false },
    });
    let valid = 0;
    let byWorkers = 0;
    let freshWorkers = 0;
    const discoverAndValidate = (workers?: number) => () => {
      const result = discoverPlugins({
        searchPaths: config.searchPaths,
        fileLimits: config.fileLimits,
        ...(workers === undefined ? {} : { workers }),
      });
      if (workers === undefined) {
        byWorkers = lastParallelRun.byWorkers / Math.max(1, lastParallelRun.chunks);
        freshWorkers = lastParallelRun.fresh;
      }
      valid = validatePlugins(result.candidates, validationContext(config)).load.length;
    };
    // The floor: list the search path and each plugin directory, and read every manifest. No parsing.
    let bytes = 0;
    const baseline = () => {
      bytes = 0;
      for (const name of readdirSync(root)) {
        const dir = join(root, name);
        readdirSync(dir);
        bytes += readFileSync(join(dir, 'plugin.toml')).length;
      }
    };
    // Alternating rounds, wall and CPU time (every thread of the process: the workers' too), and the calling
    // thread's own CPU time (where the kernel tells it): with workers, the split between the threads.
    // Discovery keeps its worker threads between runs (src/discovery/parallel.ts), so after the warm-up `ours`
    // measures warm threads on both sides, as a rescan soon after a scan has them. `fresh` is the same discovery
    // with its workers ended first: a fresh worker beside a warm calling thread (what `ours` measured before the
    // workers were kept). The warm-up's `ours` is a cold discovery (a fresh worker, and this thread's first), as a
    // host's first scan is; it is printed too.
    const variants = {
      ours: discoverAndValidate(),
      fresh: () => {
        closeParallelWorkers();
        discoverAndValidate()();
      },
      alone: discoverAndValidate(0),
      base: baseline,
    };
    type Variant = keyof typeof variants;
    const wall: Record<Variant, number[]> = { ours: [], fresh: [], alone: [], base: [] };
    const cpu: Record<Variant, number[]> = { ours: [], fresh: [], alone: [], base: [] };
    const callerCpu: Record<Variant, number[]> = { ours: [], fresh: [], alone: [], base: [] };
    const share = { ours: [] as number[], fresh: [] as number[] };
    let oursFresh = 0;
    const measure = (name: Variant, run: () => void) => {
      const c = process.cpuUsage();
      const own = threadCpuMs();
      const t = performance.now();
      run();
      wall[name].push(performance.now() - t);
      const used = process.cpuUsage(c);
      cpu[name].push((used.user + used.system) / 1000);
      if (own !== undefined) callerCpu[name].push((threadCpuMs() ?? own) - own);
      if (name === 'ours' || name === 'fresh') share[name].push(byWorkers);
      // A round of `ours` that found no kept worker (idle past IDLE_MS) measured a fresh one: say so.
      if (name === 'ours' && freshWorkers > 0) oursFresh++;
      if (name !== 'base' && valid !== PLUGINS)
        throw new Error(`expected ${PLUGINS} valid plugins, got ${valid}`);
    };
    for (const [name, run] of Object.entries(variants) as [Variant, () => void][]) measure(name, run);
    const cold = { wall: wall.ours.splice(0), cpu: cpu.ours.splice(0) };
    for (const name of Object.keys(variants) as Variant[]) {
      if (name !== 'ours') {
        wall[name].length = 0;
        cpu[name].length = 0;
      }
      callerCpu[name].length = 0;
    }
    share.ours.length = 0;
    share.fresh.length = 0;
    oursFresh = 0;
    for (let i = 0; i < RUNS; i++) {
      for (const [name, run] of Object.entries(variants) as [Variant, () => void][]) measure(name, run);
    }
    const perSecond = (ms: number[]) => PLUGINS / (median(ms) / 1000);
    const us = (ms: number[]) => `${fmt((median(ms) * 1000) / PLUGINS, 1)} us`;
    const met = perSecond(wall.ours) >= TARGET_PER_SECOND;
    printTable(
      `discovery: discover + validate ${fmt(PLUGINS)} plugins (median of ${RUNS}; ${fmt(bytes / 1024)} KiB of manifests; ${availableParallelism()} cores, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')})`,
      [
        {
          figure: 'plugins/s',
          value: fmt(perSecond(wall.ours)),
          baseline: `${fmt(perSecond(wall.base))} (read only)`,
          ratio: `${fmt(perSecond(wall.ours) / perSecond(wall.base), 2)}x of baseline`,
          target: `>= ${fmt(TARGET_PER_SECOND)}/s`,
          met,
        },
        {
          figure: 'plugins/s, fresh worker',
          value: fmt(perSecond(wall.fresh)),
          baseline: `${fmt(perSecond(wall.base))} (read only)`,
          ratio: `${fmt(perSecond(wall.ours) / perSecond(wall.fresh), 2)}x with kept workers`,
          target: '',
        },
        {
          figure: 'plugins/s, cold (first round)',
          value: fmt(perSecond(cold.wall)),
          baseline: '',
          ratio: `CPU ${fmt(((cold.cpu[0] ?? 0) * 1000) / PLUGINS, 1)} us a plugin (1 run)`,
          target: '',
        },
        {
          figure: 'plugins/s, one thread',
          value: fmt(perSecond(wall.alone)),
          baseline: `${fmt(perSecond(wall.base))} (read only)`,
          ratio: `${fmt(perSecond(wall.ours) / perSecond(wall.alone), 2)}x with workers`,
          target: '',
        },
        {
          figure: 'time per plugin',
          value: us(wall.ours),
          baseline: us(wall.base),
          ratio: `${fmt(median(wall.ours) / median(wall.base), 2)}x`,
          target: '',
        },
        {
          figure: 'CPU per plugin',
          value: `${us(cpu.ours)} (fresh worker: ${us(cpu.fresh)}; one thread: ${us(cpu.alone)})`,
          baseline: us(cpu.base),
          ratio: `${fmt(median(cpu.alone) / median(cpu.base), 2)}x (one thread)`,
          target: '',
        },
        {
          figure: 'CPU per plugin, calling thread',
          value:
            callerCpu.ours.length === 0
              ? 'n/a'
              : `${us(callerCpu.ours)} with workers (fresh: ${us(callerCpu.fresh)}; one thread: ${us(callerCpu.alone)})`,
          baseline: '',
          ratio: '',
          target: '',
        },
        {
          figure: 'share done by workers',
          value: `${fmt(median(share.ours) * 100)} % (fresh worker: ${fmt(median(share.fresh) * 100)} %)`,
          baseline: `kept worker in ${RUNS - oursFresh} of ${RUNS} rounds`,
          ratio: '',
          target: '',
        },
      ],
    );
    return met;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
