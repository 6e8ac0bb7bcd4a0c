// Diagnostic, not a test nor a bench: the tenants bench's load (bench/tenants.ts) on a TenantRegistry of its own,
// without the bench's phases, to watch what the host's scavenges copy (docs/BENCHMARKS.md, "session 14").
// After `npm run build`, as root (process mode's runners):
//   node --trace-gc-nvp scripts/tenants-gc-probe.mjs 2>&1 | grep 'gc=s' | grep -o 'pause=[^ ]*\|new_space_survived=[^ ]*'
// Environment: MODE (process, or none), SECS (how long A saturates, 6), ECHO and SPIN (A's callers, 24 and 6),
// CLOCK=1 (B's 4 callers paced by a worker thread's messages, as the bench's clock; otherwise by 1 ms timers).
// On 2026-12-02 this copied 36-50 KB a scavenge (pauses 0.6-1.5 ms) where the bench's contended phases copied
// 1.1-3.5 MB (5-13 ms).
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { loadHostConfig } from '../dist/src/host/host-config.js';
import { MemoryStorage } from '../dist/src/host/services.js';
import { TenantRegistry } from '../dist/src/tenants/registry.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const mode = process.env.MODE ?? 'process';
const dir = mkdtempSync(join(tmpdir(), 'reed-tenants-gc-probe-'));
chmodSync(dir, 0o755); // runners run as other uids and pass through it to their sockets
const SOURCE = `
#include <stdint.h>
#include "reed_wasm.h"
static char buf[4096];
static volatile uint64_t sink;
REED_EXPORT(echo) int32_t echo(void) { int32_t n = reed_input_read(buf, sizeof buf, 0); reed_output_write(buf, n); return 0; }
REED_EXPORT(spin) int32_t spin(void) { for (uint32_t i = 0; i < 200000; i++) sink += i; return 0; }
`;
writeFileSync(join(dir, 'load.c'), SOURCE);
execFileSync('/usr/bin/clang', [
  '--target=wasm32-wasi',
  '-O2',
  '-mexec-model=reactor',
  '-I',
  join(REPO, 'include'),
  '-o',
  join(dir, 'load.wasm'),
  join(dir, 'load.c'),
]);
const wasm = readFileSync(join(dir, 'load.wasm'));
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
const quotas =
  mode === 'process'
    ? 'max_concurrent_calls = 16\ncalls_per_second = 5000\ncpu_weight = 100\nmemory_mb = 1024\n'
    : 'max_concurrent_calls = 16\ncalls_per_second = 5000\nfuel_per_second = 20000000\nmemory_mb = 8\n';
writeFileSync(
  join(dir, 'reed.toml'),
  'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n' +
    `[tenants.a]\nplugin_dirs = ["plugins-a"]\n[tenants.a.quotas]\n${quotas}` +
    `[tenants.b]\nplugin_dirs = ["plugins-b"]\n[tenants.b.quotas]\n${quotas}`,
);
const config = loadHostConfig({
  cwd: dir,
  env: {},
  home: dir,
  overrides: { pluginDirs: [], defaultSearchPaths: false },
});
const registry = await TenantRegistry.start({
  config,
  forceMode: mode,
  logger: pino({ level: 'silent' }),
  storage: () => new MemoryStorage(),
  audit: false,
});
const a = registry.get('a');
const b = registry.get('b');
const input = new Uint8Array(64).fill(120);
const counts = new Map();
const count = (key) => counts.set(key, (counts.get(key) ?? 0) + 1);
let stop = false;

// A: each caller calls again at once after an answer, after a turn of the loop after a refusal (as the bench's).
const callerA = (fn) => async () => {
  while (!stop) {
    try {
      await a.call('bench.load', fn, input);
      count(`a ${fn} ok`);
    } catch (error) {
      count(`a refused ${error.details?.quota ?? error.code}`);
      await yieldToLoop();
    }
  }
};

// B: 4 callers, a call due about each millisecond.
let due = async () => sleep(1);
let clock;
if (process.env.CLOCK) {
  clock = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const cell = new Int32Array(new SharedArrayBuffer(4));
     for (;;) { Atomics.wait(cell, 0, 0, 1); parentPort.postMessage(0); }`,
    { eval: true },
  );
  const waiters = [];
  clock.on('message', () => waiters.shift()?.());
  due = () => new Promise((resolve) => waiters.push(resolve));
}
const callerB = async () => {
  while (!stop) {
    await due();
    await b.call('bench.load', 'echo', input);
    count('b ok');
  }
};

setTimeout(
  () => {
    stop = true;
  },
  Number(process.env.SECS ?? 6) * 1000,
);
await Promise.all([
  ...Array.from({ length: 4 }, callerB),
  ...Array.from({ length: Number(process.env.ECHO ?? 24) }, callerA('echo')),
  ...Array.from({ length: Number(process.env.SPIN ?? 6) }, callerA('spin')),
]);
console.error(Object.fromEntries(counts));
await clock?.terminate();
await registry.close();
rmSync(dir, { recursive: true, force: true });
