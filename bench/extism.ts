// An Extism plugin's call overhead in mode none, beside Extism's own JavaScript host (@extism/extism, in-process,
// no worker) calling the same module in the same run: a 64-byte echo through the whole path of each, in wall-clock
// and in CPU time (this process's; steadier than wall-clock on a shared machine).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import createPlugin from '@extism/extism';
import pino from 'pino';
import type { InProcessSandbox } from '../src/backends/in-process/in-process-sandbox.js';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { fmt, median, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BATCHES = 15;
const BATCH = 5_000;

/** A plugin of one echo function, built with Extism's C PDK (bench/fixtures/extism/echo.c). */
function buildEcho(dir: string): string {
  const file = join(dir, 'echo.wasm');
  execFileSync('clang', [
    '--target=wasm32-wasi',
    '-O2',
    '-mexec-model=reactor',
    `-I${join(REPO, 'test/fixtures/third-party/extism-c-pdk')}`,
    '-o',
    file,
    join(REPO, 'bench/fixtures/extism/echo.c'),
  ]);
  return file;
}

/** Microseconds per call over one batch, of wall-clock time and of this process's CPU time. */
interface Timing {
  wall: number;
  cpu: number;
}

/** One batch of calls, each awaited when it answers a promise (`before` runs first, untimed). */
async function batch(call: () => unknown, before?: () => Promise<unknown>): Promise<Timing> {
  await before?.();
  const cpu = process.cpuUsage();
  const t = performance.now();
  for (let i = 0; i < BATCH; i++) {
    const result = call();
    if (result instanceof Promise) await result;
  }
  const wall = ((performance.now() - t) * 1000) / BATCH;
  const used = process.cpuUsage(cpu);
  return { wall, cpu: (used.user + used.system) / BATCH };
}

const medians = (timings: Timing[]) => ({
  wall: median(timings.map((t) => t.wall)),
  cpu: median(timings.map((t) => t.cpu)),
});

export async function runExtismBench(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-extism-'));
  try {
    const wasm = buildEcho(dir);
    const pluginDir = join(dir, 'plugins', 'echo');
    mkdirSync(pluginDir, { recursive: true });
    copyFileSync(wasm, join(pluginDir, 'plugin.wasm'));
    writeFileSync(
      join(pluginDir, 'plugin.toml'),
      '[metadata]\nid = "bench.extism-echo"\nname = "echo"\nversion = "1.0.0"\napi_version = "1.0.0"\n',
    );
    const config = loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [join(dir, 'plugins')], defaultSearchPaths: false },
    });
    const host = await PluginHost.start({
      config,
      logger: pino({ level: 'silent' }),
      services: { storage: new MemoryStorage() },
    });
    const extism = await createPlugin(Uint8Array.from(readFileSync(wasm)).buffer, {
      useWasi: true,
      runInWorker: false,
    });
    try {
      const input = new Uint8Array(64).fill(120);
      const sandbox = host.sandbox('bench.extism-echo') as InProcessSandbox;
      const ourOutput = sandbox.callSync('echo', input).output;
      const theirOutput = (await extism.call('echo', input))?.bytes();
      if (
        Buffer.compare(ourOutput, input) !== 0 ||
        Buffer.compare(theirOutput ?? Buffer.alloc(0), input) !== 0
      ) {
        throw new Error('the echo plugin did not echo in both hosts');
      }
      // @extism/extism 1.0.3 fails a plugin's 16,384th call (its block numbers are not reused from call to
      // call: "cannot assign to this block"); its reset() starts them again, so it runs before each of its batches.
      const reset = () => extism.reset();
      const runs = {
        sync: () => sandbox.callSync('echo', input),
        ours: () => host.call('bench.extism-echo', 'echo', input),
        theirs: () => extism.call('echo', input),
      };
      await batch(runs.sync);
      await batch(runs.ours);
      await batch(runs.theirs, reset);
      // Batches of each in turn, so all three see the same machine.
      const times: Record<keyof typeof runs, Timing[]> = { sync: [], ours: [], theirs: [] };
      for (let b = 0; b < BATCHES; b++) {
        times.theirs.push(await batch(runs.theirs, reset));
        times.ours.push(await batch(runs.ours));
        times.sync.push(await batch(runs.sync));
      }
      const theirs = medians(times.theirs);
      const row = (figure: string, t: Timing, target: boolean): Row => ({
        figure,
        value: `${fmt(t.wall, 2)} us (CPU ${fmt(t.cpu, 2)})`,
        baseline: `${fmt(theirs.wall, 2)} us (CPU ${fmt(theirs.cpu, 2)}) @extism/extism`,
        ratio: `${fmt(theirs.wall / t.wall, 1)}x faster (CPU ${fmt(theirs.cpu / t.cpu, 1)}x)`,
        target: target ? '>= 3x faster (CPU)' : '',
        ...(target ? { met: theirs.cpu / t.cpu >= 3 } : {}),
      });
      // The target is on the whole host path as bench/wasm.ts measures our own ABI's echo (the in-process sandbox's
      // call, synchronous); awaited through host.call() beside it. Extism's host call is awaited (it answers a promise).
      // It is judged in CPU time: on a shared machine, wall-clock mostly measures the other processes.
      const rows = [
        row('Extism echo 64 B (C PDK), whole host path (sync)', medians(times.sync), true),
        row('Extism echo 64 B (C PDK), host.call() awaited', medians(times.ours), false),
      ];
      printTable('extism: mode none beside @extism/extism (same module, same run)', rows);
      return rows.every((r) => r.met !== false);
    } finally {
      await extism.close();
      await host.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
