// Issue 16, part 1: warm pools in process mode. A warm runner is started, hardened and connected ahead of any
// plugin; handed out, it gets the plugin's own limits and is isolated exactly as a runner started fresh for it.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import { poolsOf, type WarmPool } from '../../src/backends/pool/warm-pool.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { startHost } from '../helpers/host.js';
import { killHost, spawnHostFixture, startSweepingHost } from '../helpers/host-child.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { alive, runnerNodePid } from '../helpers/processes.js';
import { buildWasiC } from '../helpers/wasm-c.js';

const SOURCE = `
#include <stdint.h>
/* Grows the memory by 1 MiB; traps when the grow is refused. */
__attribute__((export_name("grow"))) int32_t grow(void) {
  if (__builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1) __builtin_trap();
  return 0;
}
__attribute__((export_name("ok"))) int32_t ok(void) { return 0; }
`;

let wasm: Buffer | undefined;
/**
 * pool.big: the pool's shape (WASM, no network, no data directory, the default tmpfs, the same heap cap) with limits
 * above the pool's own (memory 100 MiB against the host's default 64, pids 60, half a CPU); pool.small: below them;
 * pool.wide: 600 MiB, a V8 heap cap the pool's runners were not started with; pool.net: the network granted.
 */
function plugins(): string {
  wasm ??= buildWasiC(SOURCE, { reactor: true });
  const root = tempDir('reed-pool-plugins-');
  const files = { 'plugin.wasm': wasm };
  const plugin = (id: string, extra: Record<string, unknown>) =>
    writePlugin(root, id, { id, entry_point: 'plugin.wasm', ...extra }, files);
  plugin('pool.big', { limits: { memory_mb: 100, pids: 60, cpus: 0.5 } });
  plugin('pool.small', { limits: { memory_mb: 24 } });
  plugin('pool.wide', { limits: { memory_mb: 600 } });
  plugin('pool.net', { permissions: { network: true } });
  return root;
}

const FAST = { startTimeoutMs: 20_000, graceMs: 500, restartBaseMs: 20, restartMaxMs: 200 };
const POLICY = '[policy.permissions]\nnetwork = true\n';

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function poolHost(
  root: string,
  size: number,
): Promise<{ host: PluginHost; pool: WarmPool<RunnerProcess> }> {
  const reedToml = `${POLICY}${size > 0 ? `[sandbox.pool]\nprocess = ${size}\nttl = "10m"\n` : ''}`;
  const { host } = await startHost([root], { mode: 'process', reedToml, supervision: FAST, plugins: [] });
  hosts.push(host);
  const [pool] = poolsOf(host.session.id) as WarmPool<RunnerProcess>[];
  if (size > 0) {
    expect(pool?.kind).toBe('process');
    await pool?.filled();
  } else expect(pool).toBeUndefined();
  return { host, pool: pool as WarmPool<RunnerProcess> };
}

const add = async (host: PluginHost, id: string) => {
  const candidate = host.scan.order.load.find((c) => c.id === id);
  if (candidate === undefined) throw new Error(`no candidate ${id}`);
  const status = await host.add(candidate);
  expect(status.state).toBe('ready');
};

const runnerOf = (host: PluginHost, id: string) =>
  ((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner as RunnerProcess;

/** How many 1 MiB grows a plugin's memory takes before one is refused. */
async function grows(host: PluginHost, id: string): Promise<number> {
  for (let n = 0; n < 2_000; n++) {
    const ok = await host.call(id, 'grow', '').then(
      () => true,
      () => false,
    );
    if (!ok) return n;
  }
  return Number.POSITIVE_INFINITY;
}

const status = (pid: number, field: string) =>
  new RegExp(`^${field}:\\s+(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim();

/**
 * What isolates a runner, as the kernel sees it from outside: its uid, which namespaces are its own (not the
 * host's), seccomp, no_new_privs, capabilities, its mounts (point, type, and a tmpfs's size), its environment's
 * names, and its cgroup's limits. Two runners isolated alike have equal profiles but for the uid's value.
 */
function profile(runner: RunnerProcess) {
  const pid = runnerNodePid(runner.pid as number);
  const ns = (name: string) =>
    readlinkSync(`/proc/${pid}/ns/${name}`) !== readlinkSync(`/proc/self/ns/${name}`);
  const uid = Number(status(pid, 'Uid')?.split(/\s+/)[0]);
  const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [head = '', tail = ''] = line.split(' - ');
      const fields = head.split(' ');
      const [type, , options = ''] = tail.split(' ');
      const size = type === 'tmpfs' ? (/size=\w+/.exec(options)?.[0] ?? '') : '';
      return `${fields[4]} ${type} ${size}`;
    })
    .sort();
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .filter((e) => e !== '')
    .map((e) => e.split('=')[0])
    .sort();
  const [memory = '', pids = '', cpu] = runner.cgroup?.dirs ?? [];
  const read = (dir: string | undefined, file: string) =>
    dir === undefined || !existsSync(join(dir, file))
      ? undefined
      : readFileSync(join(dir, file), 'utf8').trim();
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  return {
    uid,
    namespaces: Object.fromEntries(['pid', 'mnt', 'ipc', 'uts', 'user', 'net'].map((n) => [n, ns(n)])),
    seccomp: status(pid, 'Seccomp'),
    noNewPrivs: status(pid, 'NoNewPrivs'),
    capEff: status(pid, 'CapEff'),
    capBnd: status(pid, 'CapBnd'),
    mounts,
    environ,
    cgroup: v2
      ? { memory: read(memory, 'memory.max'), pids: read(memory, 'pids.max'), cpu: read(memory, 'cpu.max') }
      : {
          memory: read(memory, 'memory.limit_in_bytes'),
          memsw: read(memory, 'memory.memsw.limit_in_bytes'),
          pids: read(pids, 'pids.max'),
          cpu: read(cpu, 'cpu.cfs_quota_us'),
        },
  };
}

describe('process mode: a warm pool', () => {
  it("hands a warm runner to a plugin of the pool's shape with the plugin's own limits, isolated as a fresh one", async () => {
    const root = plugins();
    const { host, pool } = await poolHost(root, 2);
    const warm = pool.idleRunners().map((r) => r.pid);
    expect(warm).toHaveLength(2);

    await add(host, 'pool.big');
    const pooled = runnerOf(host, 'pool.big');
    // It is one of the runners the pool had started, and the pool launched another in its place.
    expect(warm).toContain(pooled.pid);
    expect(pool.stats.handedOut).toBe(1);
    await pool.filled();
    expect(pool.ready).toBe(2);

    // The plugin's memory limit (100 MiB), not the pool's (the host's default, 64 MiB).
    const big = await grows(host, 'pool.big');
    expect(big).toBeGreaterThan(80);
    expect(big).toBeLessThan(100);
    await add(host, 'pool.small');
    expect(warm).toContain(runnerOf(host, 'pool.small').pid);
    expect(await grows(host, 'pool.small')).toBeLessThan(24);

    // The same plugin in a host without a pool: a fresh runner, isolated and limited exactly alike.
    const fresh = await poolHost(root, 0);
    await add(fresh.host, 'pool.big');
    const a = profile(pooled);
    const b = profile(runnerOf(fresh.host, 'pool.big'));
    expect(a.uid).toBeGreaterThanOrEqual(600_000);
    expect(b.uid).toBeGreaterThanOrEqual(600_000);
    expect(a.uid).not.toBe(b.uid);
    expect({ ...a, uid: 0 }).toEqual({ ...b, uid: 0 });
    expect(Object.values(a.namespaces).every((own) => own)).toBe(true);
    expect(a.seccomp).toBe('2');
    expect(a.noNewPrivs).toBe('1');
    expect(a.capEff).toBe('0000000000000000');
    // (100 + the runner's 192 MiB allowance), pids 60, half of each 100 ms period.
    const limit = String((100 + 192) * 1024 * 1024);
    expect(a.cgroup.memory).toBe(limit);
    expect(a.cgroup.pids).toBe('60');
    expect(a.cgroup.cpu).toMatch(/^50000\b/);
    // What the 'runner ready' line says each enforces: the same, but for the uid's value.
    const said = (r: RunnerProcess) => r.isolation.enforced.map((e) => e.replace(/^uid \d+$/, 'uid'));
    expect(said(pooled)).toEqual(said(runnerOf(fresh.host, 'pool.big')));
    expect(pooled.isolation.notEnforced).toEqual(runnerOf(fresh.host, 'pool.big').isolation.notEnforced);
    // Two plugins handed warm runners are two uids.
    expect(profile(runnerOf(host, 'pool.small')).uid).not.toBe(a.uid);
    // A warm runner loaded the WASM runtime before it was handed its plugin (sandbox-runner/warm-preload.ts, at pool
    // fill), without a failure; a runner started fresh loads only what its plugin needs, once it has it.
    const argv = (r: RunnerProcess) =>
      readFileSync(`/proc/${runnerNodePid(r.pid as number)}/cmdline`, 'utf8').split('\0');
    expect(argv(pooled)).toContainEqual(
      expect.stringMatching(/^--import=file:.*\/dist\/runner\/warm-preload\.js$/),
    );
    expect(argv(runnerOf(fresh.host, 'pool.big')).filter((arg) => arg.startsWith('--import'))).toEqual([]);
    expect(pooled.stderrTail).not.toContain('preloading the WASM runtime failed');
  }, 180_000);

  it('starts fresh what a warm runner cannot be made into: another heap cap, the network', async () => {
    const { host, pool } = await poolHost(plugins(), 1);
    const warm = pool.idleRunners().map((r) => r.pid);
    await add(host, 'pool.wide');
    await add(host, 'pool.net');
    expect(warm).not.toContain(runnerOf(host, 'pool.wide').pid);
    expect(warm).not.toContain(runnerOf(host, 'pool.net').pid);
    expect(pool.stats.handedOut).toBe(0);
    expect(pool.idleRunners().map((r) => r.pid)).toEqual(warm);
    expect(runnerOf(host, 'pool.net').isolation.notEnforced).toContain('network (granted)');
  }, 120_000);

  it('replaces a warm runner that dies before it is handed out; a plugin is never given the dead one', async () => {
    const { host, pool } = await poolHost(plugins(), 2);
    const [victim, other] = pool.idleRunners();
    process.kill(-(victim?.pid as number), 'SIGKILL');
    await victim?.exited;
    // The pool saw it exit (its handler ran first), and launches a replacement.
    expect(pool.idleRunners()).toEqual([other]);
    await pool.filled();
    expect(pool.stats.died).toBe(1);
    expect(pool.idleRunners()).not.toContain(victim);
    expect(victim?.dir === undefined || existsSync(victim.dir)).toBe(false);
    await add(host, 'pool.big');
    expect(runnerOf(host, 'pool.big')).toBe(other);
    await host.call('pool.big', 'ok', '');
  }, 120_000);

  it("leaves nothing after the host's close: runners, sandbox directories, cgroups", async () => {
    const { host, pool } = await poolHost(plugins(), 2);
    await add(host, 'pool.big');
    await pool.filled();
    const runners = [...pool.idleRunners(), runnerOf(host, 'pool.big')];
    const pids = runners.map((r) => r.pid as number);
    const dirs = runners.map((r) => r.dir as string);
    const cgroups = runners.flatMap((r) => r.cgroup?.dirs ?? []);
    expect(cgroups.length).toBeGreaterThan(0);
    expect([...dirs, ...cgroups].every((d) => existsSync(d))).toBe(true);
    await host.close();
    expect(pids.filter(alive)).toEqual([]);
    expect([...dirs, ...cgroups].filter((d) => existsSync(d))).toEqual([]);
  }, 120_000);

  it('leaves nothing after the host is killed with SIGKILL, once the next host has swept', async () => {
    const runtimeDir = tempDir('reed-pool-death-');
    const { child, ready } = await spawnHostFixture('pool-host', [runtimeDir, '2']);
    const pids = ready.map(Number);
    expect(pids).toHaveLength(2);
    expect(pids.every(alive)).toBe(true);
    const hostPid = child.pid as number;
    await killHost(child);
    // Each runner dies with its connection to the host (and bwrap with its parent).
    for (const pid of pids) while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toHaveLength(2);
    const next = await startSweepingHost(runtimeDir);
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
    await next.close();
    // No cgroup of the dead host is left in any hierarchy.
    const left = ['/sys/fs/cgroup/reed', '/sys/fs/cgroup/memory/reed', '/sys/fs/cgroup/pids/reed']
      .filter((d) => existsSync(d))
      .flatMap((d) => readdirSync(d))
      .filter((name) => new RegExp(`^h\\d+\\.${hostPid}\\.`).test(name));
    expect(left).toEqual([]);
  }, 120_000);
});
