import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { InProcessSandbox } from '../src/backends/in-process/in-process-sandbox.js';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { encodeS64, encodeU32 } from '../src/runtime/wasm/binary.js';
import { fuelSuite } from './fuel.js';
import { fmt, median, perCallTimes, printTable, type Row } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

async function callOverhead(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-wasm-'));
  try {
    const config = loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [join(REPO, 'examples/plugins')], defaultSearchPaths: false },
    });
    const host = await PluginHost.start({
      config,
      plugins: ['example.hello'],
      logger: pino({ level: 'silent' }),
      services: { storage: new MemoryStorage() },
    });
    const input = new Uint8Array(64).fill(120);
    const sandbox = host.sandbox('example.hello') as InProcessSandbox;
    const ours = perCallTimes(() => sandbox.callSync('echo', input));
    // Through the async API as well, awaited one by one.
    const asyncTimes: number[] = [];
    for (let b = 0; b < 15; b++) {
      const t = performance.now();
      for (let i = 0; i < 5_000; i++) await host.call('example.hello', 'echo', input);
      asyncTimes.push(((performance.now() - t) * 1000) / 5_000);
    }
    await host.close();

    // Baseline: the same, unmodified module called directly, with the least host glue that works.
    const bytes = readFileSync(join(REPO, 'examples/plugins/hello/plugin.wasm'));
    let memory: Uint8Array = new Uint8Array(0);
    let out: Uint8Array = new Uint8Array(0);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
      env: { log: () => {} },
      reed: {
        input_len: () => input.length,
        input_read: (ptr: number, len: number) => {
          const n = Math.min(len, input.length);
          memory.set(input.subarray(0, n), ptr);
          return n;
        },
        output_write: (ptr: number, len: number) => {
          out = memory.slice(ptr, ptr + len);
          return 0;
        },
        config_get: () => -1,
      },
    });
    memory = new Uint8Array((instance.exports.memory as WebAssembly.Memory).buffer);
    const echo = instance.exports.echo as () => number;
    const raw = perCallTimes(() => {
      echo();
      if (out.length !== 64) throw new Error('echo failed');
    });
    const asyncMedian = median(asyncTimes);
    return [
      {
        figure: 'echo 64 B, whole host path (sync)',
        value: `${fmt(ours.wall, 3)} us (CPU ${fmt(ours.cpu, 3)})`,
        baseline: `${fmt(raw.wall, 3)} us (CPU ${fmt(raw.cpu, 3)}) raw V8`,
        ratio: `${fmt(ours.wall / raw.wall, 1)}x`,
        target: '<= 1 us',
        met: ours.wall <= 1,
      },
      {
        figure: 'echo 64 B, host.call() awaited',
        value: `${fmt(asyncMedian, 3)} us`,
        baseline: `${fmt(raw.wall, 3)} us raw V8`,
        ratio: `${fmt(asyncMedian / raw.wall, 1)}x`,
        target: '',
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A valid module of about `size` bytes: many functions, each a loop over additions. */
export function bigModule(size: number): Uint8Array {
  const body: number[] = [0x00]; // no locals
  body.push(0x41, 0x00); // i32.const 0: the function's result
  body.push(0x03, 0x40, 0x41, 0x00); // loop; i32.const 0
  for (let i = 0; i < 60; i++) body.push(0x41, ...encodeS64(BigInt(i)), 0x6a); // i32.const i; i32.add
  body.push(0x1a, 0x0b, 0x0b); // drop; end loop; end function
  const functions = Math.ceil(size / (body.length + 2));
  const section = (id: number, content: number[]) => [id, ...encodeU32(content.length), ...content];
  const code: number[] = [...encodeU32(functions)];
  for (let i = 0; i < functions; i++) code.push(...encodeU32(body.length), ...body);
  const funcs: number[] = [...encodeU32(functions)];
  for (let i = 0; i < functions; i++) funcs.push(0x00);
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [0x01, 0x60, 0x00, 0x01, 0x7f]),
    ...section(3, funcs),
    ...section(5, [0x01, 0x00, 0x01]),
    ...section(7, [0x01, 0x06, ...Buffer.from('memory'), 0x02, 0x00]),
    ...section(10, code),
  ]);
}

function loadTimes(): Row[] {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-load-'));
  try {
    const file = join(dir, 'big.wasm');
    const module = bigModule(1024 * 1024);
    writeFileSync(file, module);
    if (!WebAssembly.validate(module)) throw new Error('generated module does not validate');
    // Each load in a fresh process, so that nothing but the on-disk cache carries over.
    const child = join(REPO, 'dist/bench/wasm-load-child.js');
    const load = (cacheDir: string) => {
      const r = spawnSync(process.execPath, [child, file, cacheDir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
      return Number(r.stdout.trim());
    };
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) {
      const cacheDir = join(dir, `cache-${i}`);
      cold.push(load(cacheDir));
      warm.push(load(cacheDir));
    }
    const ratio = median(warm) / median(cold);
    return [
      {
        figure: `load ${fmt(module.length / 1024)} KiB module, warm cache`,
        value: `${fmt(median(warm), 1)} ms`,
        baseline: `${fmt(median(cold), 1)} ms cold`,
        ratio: `${fmt(ratio, 2)}x of cold`,
        target: '<= 0.2x of cold',
        met: ratio <= 0.2,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runWasmBench(): Promise<boolean> {
  const rows = [...(await callOverhead()), ...fuelSuite(), ...loadTimes()];
  printTable('wasm: mode none', rows);
  return rows.every((r) => r.met !== false);
}
