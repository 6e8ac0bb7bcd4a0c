// What host imports cost beside the fuel they pay (issue 10, class 6): fuel is meant to bound the CPU a plugin can
// make the machine spend, so an import must not cost much more CPU per fuel than plain instructions do. Each export
// of bench/fixtures/import-costs (and of bench/fixtures/extism-costs, for Extism's host functions) calls one import n times; its CPU per fuel is set beside the same plugin's plain
// instructions ("plain": bench/fixtures/cpu.wat's loop), measured in the same host, in alternation. CPU is this
// process's (the host's: mode none runs the plugin on it) and, in process mode, the runner's threads' too: a call
// that asks the host costs both sides.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadHostConfig } from '../src/host/host-config.js';
import { PluginHost } from '../src/host/plugin-host.js';
import { MemoryStorage } from '../src/host/services.js';
import type { SandboxMode } from '../src/manifest/types.js';
import { onUnjournaledExt4 } from '../src/plan/data-dir.js';
import { descendants } from './processes.js';
import { fmt, median, printTable, type Row, threadsCpuNs } from './report.js';

const FIXTURES = fileURLToPath(new URL('../../bench/fixtures', import.meta.url));
/** Reed's and WASI's imports; Extism's host functions (a module speaks one ABI or the other). */
const ID = 'bench.import-costs';
const EXTISM_ID = 'bench.extism-costs';
const REPS = 5;
/** Each run takes about this long (n is found by doubling). */
const RUN_MS = 40;
const TARGET = 2;

/** The exports, each one import in a loop (bench/fixtures/import-costs/plugin.wat). */
const IMPORTS = [
  'clock_time_get',
  'random_get',
  'fd_write_stdout',
  'fd_write_stderr',
  'fd_write_file',
  'fd_read_file',
  'fd_seek',
  'fd_filestat_get',
  'fd_fdstat_get',
  'args_sizes_get',
  'sched_yield',
  'fd_prestat_get',
  'path_filestat_get',
  'path_filestat_missing',
  'path_open_close',
  'fd_readdir',
  'fd_readdir_emptied',
  'mkdir_rmdir',
  'symlink_unlink',
  'create_unlink',
  'poll_oneoff',
  'input_len',
  'output_write0',
  'log',
  'storage_get',
  'storage_put',
  'config_get',
  // The rest of preview1's filesystem (session 20; files from preparedFiles).
  'fd_sync',
  'fd_datasync_dirty',
  'fd_sync_dirty_1m',
  'fd_allocate',
  'allocate_truncate_16m',
  'set_size_up_down',
  'write_truncate_1m',
  'fd_filestat_set_times',
  'path_filestat_set_times',
  'rename_pair',
  'link_rename_over',
  'link_unlink',
  'fd_pwrite_64k',
  'fd_pwrite_1m',
  'fd_write_1m',
  'fd_pread_64k',
  'fd_pread_1m',
  'fd_advise_willneed',
  'fd_advise_drop_load',
  'open_renumber',
  'fd_tell',
  'fd_fdstat_set_flags',
  'path_readlink',
  'trunc_write_close_1m',
  // The fifth review's (session 21): many iovecs a call, many descriptor subscriptions a poll.
  'fd_pread_iovecs',
  'fd_pwrite_iovecs',
  'fd_write_stdout_iovecs',
  'fd_write_stderr_iovecs',
  'poll_files',
  'poll_stdin',
];
/** The rows that make and remove a name each iteration. */
const NAME_ROWS: readonly string[] = [
  'mkdir_rmdir',
  'symlink_unlink',
  'create_unlink',
  'rename_pair',
  'link_rename_over',
  'link_unlink',
];
/** bench/fixtures/extism-costs/plugin.wat's exports, likewise. */
const EXTISM_IMPORTS = [
  'extism_alloc_free',
  'extism_length',
  'extism_config_get',
  'extism_var_get',
  'extism_var_set',
  'extism_log_info',
  'extism_output_set',
  'extism_error_set',
  'extism_load_u64',
  'extism_input_load_u64',
  'extism_input_length',
  'extism_reset',
];

interface Run {
  /** CPU ns per fuel. */
  cpuPerFuel: number;
  wallNs: number;
  fuel: number;
}

async function measure(mode: SandboxMode): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'reed-bench-imports-'));
  chmodSync(dir, 0o711); // runners run as another user, and pass through it to their sockets
  writeFileSync(
    join(dir, 'reed.toml'),
    'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[policy.permissions]\nfilesystem = "readwrite"\n[limits]\nfuel_per_call = 100000000000\ncall_timeout_ms = 120000\n',
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [FIXTURES], defaultSearchPaths: false },
  });
  const host = await PluginHost.start({
    config,
    logger: pino({ level: 'silent' }),
    services: { storage: new MemoryStorage() },
    plugins: [ID, EXTISM_ID],
    forceMode: mode,
  });
  // n, 4 bytes little-endian, in 8 (Extism's plugin reads the input as one u64).
  const input = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(n);
    return b;
  };
  try {
    // Where names are made and removed on ext4 without a journal, the kernel's inode allocator is far slower after
    // many removals (docs/SECURITY.md): those rows say so.
    const unjournaled = onUnjournaledExt4(dir);
    await host.call(ID, 'setup');
    // REED_BENCH_IMPORTS=a,b: only those rows (a re-run of the rows a change touched).
    const only = process.env.REED_BENCH_IMPORTS?.split(',');
    // Its 9,999 names made and removed slow every later name made on ext4 without a journal: only when measured.
    if (only === undefined || only.includes('fd_readdir_emptied'))
      emptiedDirectory(join(dir, 'data', 'files', ID, 'e'));
    preparedFiles(join(dir, 'data', 'files', ID));
    await host.call(EXTISM_ID, 'setup', input(1));
    const runners = mode === 'none' ? [] : descendants(process.pid);
    const once = async (id: string, fn: string, n: number): Promise<Run> => {
      const runnerCpu = threadsCpuNs(runners);
      const cpu = process.cpuUsage();
      const t = performance.now();
      const { stats } = await host.call(id, fn, input(n));
      const wallNs = (performance.now() - t) * 1e6;
      const used = process.cpuUsage(cpu);
      const ns = (used.user + used.system) * 1000 + (threadsCpuNs(runners) - runnerCpu);
      return { cpuPerFuel: ns / stats.fuelConsumed, wallNs: wallNs / n, fuel: stats.fuelConsumed / n };
    };
    const sized = async (id: string, fn: string): Promise<number> => {
      let n = 256;
      for (;;) {
        const t = performance.now();
        await host.call(id, fn, input(n));
        if (performance.now() - t >= RUN_MS || n >= 2 ** 30) return n;
        n *= 2;
      }
    };
    const rows: Row[] = [];
    for (const [id, all] of [
      [ID, IMPORTS],
      [EXTISM_ID, EXTISM_IMPORTS],
    ] as const) {
      const fns = all.filter((fn) => only === undefined || only.includes(fn));
      if (fns.length === 0) continue;
      const plainN = await sized(id, 'plain');
      for (const fn of fns) {
        const n = await sized(id, fn);
        const ours: Run[] = [];
        const base: Run[] = [];
        for (let r = 0; r < REPS; r++) {
          base.push(await once(id, 'plain', plainN));
          ours.push(await once(id, fn, n));
        }
        const cpu = median(ours.map((o) => o.cpuPerFuel));
        const plain = median(base.map((b) => b.cpuPerFuel));
        rows.push({
          figure: `${fn} (mode ${mode}${unjournaled && NAME_ROWS.includes(fn) ? ', ext4 without a journal' : ''})`,
          value: `${fmt(cpu, 3)} ns CPU/fuel (${fmt(median(ours.map((o) => o.wallNs)))} ns, ${fmt(median(ours.map((o) => o.fuel)))} fuel a call)`,
          baseline: `${fmt(plain, 3)} ns CPU/fuel, plain instructions`,
          ratio: `${fmt(cpu / plain, 2)}x`,
          target: `<= ${TARGET}x`,
          met: cpu / plain <= TARGET,
        });
      }
    }
    return rows;
  } finally {
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A directory that held 9,999 names of 250 bytes, all unlinked: ext4 keeps its ~3.9 MB of blocks, which a listing
 * reads through (fd_readdir_emptied; the fourth review, session 19).
 */
function emptiedDirectory(path: string): void {
  mkdirSync(path, { mode: 0o755 });
  const names = Array.from({ length: 9_999 }, (_, i) => `${String(i).padStart(8, '0')}${'x'.repeat(242)}`);
  for (const name of names) writeFileSync(join(path, name), '');
  for (const name of names) unlinkSync(join(path, name));
}

/**
 * The files the filesystem rows after config_get use (bench/fixtures/import-costs/plugin.wat): "w" 1 MiB and "b"
 * 16 MiB of data, "z" a byte, "r" empty, "l" a symlink to "x"; 0666, as the runtime makes files (a runner has a uid
 * of its own).
 */
function preparedFiles(path: string): void {
  for (const [name, size] of [
    ['w', 1 << 20],
    ['b', 16 << 20],
    ['z', 1],
    ['r', 0],
  ] as const) {
    writeFileSync(join(path, name), Buffer.alloc(size, 0x5a));
    chmodSync(join(path, name), 0o666);
  }
  symlinkSync('x', join(path, 'l'));
}

export async function runImportFuelBench(): Promise<boolean> {
  const rows = [...(await measure('none')), ...(await measure('process'))];
  printTable(
    `import-fuel: CPU per fuel of each host import beside plain instructions (${REPS} runs each)`,
    rows,
  );
  return rows.every((r) => r.met !== false);
}
