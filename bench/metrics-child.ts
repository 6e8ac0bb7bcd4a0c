// One side of the metrics bench (bench/metrics.ts): a host with metrics on (a ReedMetrics registry subscribed for
// the whole process) or off (none ever), warmed up, then mode none's awaited host.call of the 64-byte echo in
// batches, one batch for each line read on stdin. The parent runs an `on` child and an `off` child and asks them for
// batches in turn: each side stays in its steady state (subscribing and unsubscribing in one process changes the
// channel's prototype and throws away V8's optimized call path each time: the re-optimization's work then lands in
// the measured batches), and their batches alternate within milliseconds, so both see the same machine.
//
//   metrics-child.js on|off BATCH WARM [BATCHES]
//
// After the warm-up it writes `ready`; after each batch `<cpu us per call> <wall us per call>`. With BATCHES it runs
// that many batches on its own and exits (under callgrind). Before each batch and after the last it calls
// os.getPriority, which nothing else here calls: `valgrind --tool=callgrind --dump-before=getpriority` then writes
// one dump a batch, exactly from its start to the next one's.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import { ReedMetrics } from '../src/server/metrics.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const [mode, batchArg, warmArg, batchesArg] = process.argv.slice(2);
const batch = Number(batchArg);
const warm = Number(warmArg);
const batches = batchesArg === undefined ? undefined : Number(batchesArg);
if (
  (mode !== 'on' && mode !== 'off') ||
  !(batch > 0) ||
  !(warm >= 0) ||
  !(batches === undefined || batches > 0)
) {
  process.stderr.write('usage: metrics-child.js on|off BATCH WARM [BATCHES]\n');
  process.exit(2);
}

/**
 * A minor GC (the young generation emptied), synchronous on this thread: each batch starts with the same room for
 * its garbage. Not a full one: its sweeping goes on in helper threads after it returns, and process.cpuUsage would
 * count them in the batch. The flag is set at run time and `gc` taken from a context made after it.
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options: { type: 'minor' | 'major' }) => void;

const dir = mkdtempSync(join(tmpdir(), 'reed-bench-metrics-'));
try {
  // The example plugin with the longest deadline there is: under callgrind, on a loaded machine, a call that meets
  // a GC or a compile can take seconds (5 s, its default, has been passed); the call's path is the same.
  const hello = join(REPO, 'examples/plugins/hello');
  const plugin = join(dir, 'plugins/hello');
  mkdirSync(plugin, { recursive: true });
  copyFileSync(join(hello, 'plugin.wasm'), join(plugin, 'plugin.wasm'));
  writeFileSync(
    join(plugin, 'plugin.toml'),
    `${readFileSync(join(hello, 'plugin.toml'), 'utf8')}\n[limits]\ncall_timeout_ms = 300000\n`,
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [join(dir, 'plugins')], defaultSearchPaths: false },
  });
  const host = await PluginHost.start({
    config,
    plugins: ['example.hello'],
    forceMode: 'none',
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
  });
  const metrics =
    mode === 'on' ? new ReedMetrics({ targets: () => [{ tenant: 'default', host }] }) : undefined;
  const input = new Uint8Array(64).fill(120);
  const calls = async (n: number) => {
    for (let i = 0; i < n; i++) await host.call('example.hello', 'echo', input);
  };
  await calls(warm);
  await metrics?.text();
  process.stdout.write('ready\n');
  let done = 0;
  const timed = async () => {
    getPriority(0);
    gc({ type: 'minor' });
    const c = process.cpuUsage();
    const t = performance.now();
    await calls(batch);
    const wall = ((performance.now() - t) * 1000) / batch;
    const used = process.cpuUsage(c);
    process.stdout.write(`${(used.user + used.system) / batch} ${wall}\n`);
    // A scrape now and then, as Prometheus would (outside the timed batches).
    if (++done % 8 === 0) await metrics?.text();
  };
  if (batches === undefined) for await (const _ of createInterface({ input: process.stdin })) await timed();
  else for (let b = 0; b < batches; b++) await timed();
  getPriority(0);
  metrics?.close();
  await host.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
