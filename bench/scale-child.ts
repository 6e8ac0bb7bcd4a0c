// One measurement of bench/scale in a fresh process: `host` starts a PluginHost in mode none on the plugins under
// ROOT (every one loaded and initialised), `scan` only discovers and validates them (the baseline). Prints one line
// of JSON (the host's storage is its default, LMDB under a temporary data_dir): wall-clock and CPU milliseconds, RSS (now and peak) and heap after a full GC, in bytes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { scanPlugins } from '../src/host/scan-plugins.js';

const [what, root] = process.argv.slice(2);
if ((what !== 'host' && what !== 'scan') || root === undefined) {
  throw new Error('usage: scale-child.js host|scan ROOT');
}
const data = mkdtempSync(join(tmpdir(), 'reed-bench-scale-data-'));
try {
  const config = loadHostConfig({
    cwd: data,
    // data_dir, cache_dir and runtime_dir under the temporary directory: a cold compile cache, no other host's state.
    env: { XDG_DATA_HOME: data, XDG_CACHE_HOME: data, XDG_RUNTIME_DIR: data },
    overrides: { pluginDirs: [root], defaultSearchPaths: false },
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ready = 0;
  let close: () => Promise<void> = async () => {};
  if (what === 'host') {
    const host = await PluginHost.start({
      config,
      logger: pino({ level: 'silent' }),
      forceMode: 'none',
    });
    ready = host.status().filter((s) => s.state === 'ready').length;
    close = () => host.close();
  } else {
    ready = scanPlugins(config).order.load.length;
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  (globalThis as { gc?: () => void }).gc?.();
  const memory = process.memoryUsage();
  console.log(
    JSON.stringify({
      ms,
      cpuMs: (cpu.user + cpu.system) / 1000,
      ready,
      rss: memory.rss,
      maxRss: process.resourceUsage().maxRSS * 1024,
      heapUsed: memory.heapUsed,
      external: memory.external,
    }),
  );
  await close();
} finally {
  rmSync(data, { recursive: true, force: true });
}
