// Issue 16, part 1, container mode: warm containers started ahead from the bare runner image, hardened as a
// plugin's (the same containerSpec), handed to one plugin each with its limits (the engine's container update), its
// name (the one a fresh container of its sandbox directory has: no rename needed) and owner record; the labels stay the pool's. runc here; runsc only when limits need no update.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import { poolsOf, type WarmPool } from '../../src/backends/pool/warm-pool.js';
import { OWNER_FILE } from '../../src/backends/shared/session.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { killHost, spawnHostFixture, startSweepingHost } from '../helpers/host-child.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { TRACE_DENIED } from '../helpers/processes.js';
import { buildWasiC } from '../helpers/wasm-c.js';

const docker = new Docker();

const SOURCE = `
#include <stdint.h>
__attribute__((export_name("ok"))) int32_t ok(void) { return 0; }
`;

let wasm: Buffer | undefined;
/**
 * pool.big: the pool's shape (no network, no data directory, the host's tmpfs) with limits of its own (memory
 * 100 MiB against the host's 64, pids 60, half a CPU); pool.plain: the host's limits; pool.net: the network
 * granted; pool.tmp: a tmpfs of its own.
 */
function plugins(): string {
  wasm ??= buildWasiC(SOURCE, { reactor: true });
  const root = tempDir('reed-cpool-plugins-');
  const plugin = (id: string, extra: Record<string, unknown>) =>
    writePlugin(root, id, { id, entry_point: 'plugin.wasm', ...extra }, { 'plugin.wasm': wasm as Buffer });
  plugin('pool.big', { limits: { memory_mb: 100, pids: 60, cpus: 0.5 } });
  plugin('pool.plain', {});
  plugin('pool.net', { permissions: { network: true } });
  plugin('pool.tmp', { limits: { tmpfs_mb: 8 } });
  return root;
}

const FAST = { startTimeoutMs: 60_000, graceMs: 500, restartBaseMs: 20, restartMaxMs: 200 };
const BASE = '[signatures]\nrequire = "none"\n[policy.permissions]\nnetwork = true\n';

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function poolHost(
  dirs: string[],
  size: number,
  toml = '',
): Promise<{ host: PluginHost; logs: LogLine[]; pool: WarmPool<ContainerRunner> }> {
  const reedToml = `${BASE}${toml}${size > 0 ? `[sandbox.pool]\nrunc = ${size}\nttl = "10m"\n` : ''}`;
  const { host, logs } = await startHost(dirs, {
    mode: 'container',
    reedToml,
    supervision: FAST,
    plugins: [],
  });
  hosts.push(host);
  const [pool] = poolsOf(host.session.id) as WarmPool<ContainerRunner>[];
  if (size > 0) {
    expect(pool?.kind).toBe('container runc');
    await pool?.filled();
  } else expect(pool).toBeUndefined();
  return { host, logs, pool: pool as WarmPool<ContainerRunner> };
}

const add = async (host: PluginHost, id: string) => {
  const candidate = host.scan.order.load.find((c) => c.id === id);
  if (candidate === undefined) throw new Error(`no candidate ${id}`);
  const status = await host.add(candidate);
  expect(status.state, JSON.stringify(status.error)).toBe('ready');
};

const runnerOf = (host: PluginHost, id: string) =>
  ((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner as ContainerRunner;
const idOf = (host: PluginHost, id: string) => runnerOf(host, id).container?.id as string;
const idle = (pool: WarmPool<ContainerRunner>) => pool.idleRunners().map((r) => r.container?.id);

interface Inspected {
  Name: string;
  Config: { User: string; WorkingDir: string; Env: string[]; Labels: Record<string, string>; Cmd: string[] };
  HostConfig: Record<string, unknown> & { Binds: string[] };
  State: { Pid: number };
}
const inspect = async (id: string) => (await docker.getContainer(id).inspect()) as unknown as Inspected;

/** The cgroup limits the kernel holds the container to (v1 or v2), read through its init's /proc/<pid>/cgroup. */
function cgroupLimits(pid: number): Record<string, string | undefined> {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const dirOf = (controller: string) => {
    const line = lines.find((l) => l.split(':')[1]?.split(',').includes(controller));
    const v2 = lines.find((l) => l.startsWith('0::'));
    if (line !== undefined) return join('/sys/fs/cgroup', controller, line.split(':')[2] as string);
    return v2 === undefined ? undefined : join('/sys/fs/cgroup', v2.slice(3));
  };
  const read = (controller: string, file: string) => {
    const dir = dirOf(controller);
    return dir === undefined || !existsSync(join(dir, file))
      ? undefined
      : readFileSync(join(dir, file), 'utf8').trim();
  };
  return {
    memory: read('memory', 'memory.limit_in_bytes') ?? read('memory', 'memory.max'),
    memsw: read('memory', 'memory.memsw.limit_in_bytes'),
    pids: read('pids', 'pids.max'),
    cpu: read('cpu', 'cpu.cfs_quota_us') ?? read('cpu', 'cpu.max'),
  };
}

/** The runner (the container's init's child) as the kernel sees it: uid, gid, seccomp, no_new_privs, capabilities. */
function runnerStatus(initPid: number): Record<string, string | undefined> {
  const [child] = readFileSync(`/proc/${initPid}/task/${initPid}/children`, 'utf8').trim().split(/\s+/);
  const status = readFileSync(`/proc/${child}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)?.[1]?.trim();
  return Object.fromEntries(
    ['Uid', 'Gid', 'Groups', 'Seccomp', 'NoNewPrivs', 'CapEff', 'CapPrm', 'CapBnd'].map((f) => [f, field(f)]),
  );
}

/** What docker inspect says isolates and limits a container, but for what names its sandbox directory. */
function hardening(c: Inspected) {
  const { Binds, ...host } = c.HostConfig;
  return {
    host,
    binds: Binds.map((b) => b.replace(/^.*:/, '')),
    user: c.Config.User,
    workingDir: c.Config.WorkingDir,
    env: c.Config.Env,
  };
}

describe('container mode: a warm pool (runc)', () => {
  it("hands a warm container to a plugin of the pool's shape with its limits, user and name, hardened as a fresh one", async () => {
    const root = plugins();
    const { host, logs, pool } = await poolHost([root], 2);
    const warm = idle(pool);
    expect(warm).toHaveLength(2);
    // Before the hand-out: named as any container of this host, labelled as the pool's.
    const before = await inspect(warm[0] as string);
    expect(before.Name).toMatch(/^\/reed-[0-9a-f]{8}-[0-9a-z]{6}$/);
    expect(before.Config.Labels).toMatchObject({
      'reed.managed': 'true',
      'reed.plugin.id': 'reed-warm-runner',
      'reed.pool': 'runc',
      'reed.host.session': host.session.id,
    });

    await add(host, 'pool.big');
    const pooledId = idOf(host, 'pool.big');
    expect(warm).toContain(pooledId);
    expect(pool.stats.handedOut).toBe(1);
    // The start reports it: the 'runner ready' line of that start says pooled.
    const ready = logs.filter((l) => l.msg === 'runner ready' && l.pluginId === 'pool.big');
    expect(ready.map((l) => l.pooled)).toEqual([true]);
    await host.call('pool.big', 'ok', '');
    await pool.filled();
    expect(pool.ready).toBe(2);
    // The owner record in its sandbox directory names the plugin now.
    const dir = runnerOf(host, 'pool.big').dir;
    expect(JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8'))).toMatchObject({ pluginId: 'pool.big' });

    // The same plugin in a host without a pool: a fresh container, hardened and limited exactly alike.
    const fresh = await poolHost([root], 0);
    await add(fresh.host, 'pool.big');
    const a = await inspect(pooledId);
    const b = await inspect(idOf(fresh.host, 'pool.big'));
    expect(hardening(a)).toEqual(hardening(b));
    for (const c of [a, b]) expect(c.Name).toMatch(/^\/reed-[0-9a-f]{8}-[0-9a-z]{6}$/);
    expect(a.HostConfig).toMatchObject({
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      Privileged: false,
      ReadonlyRootfs: true,
      NetworkMode: 'none',
      Init: true,
      IpcMode: 'private',
      Runtime: 'runc',
      // (100 + the runner's 192 MiB allowance), pids 60, half a CPU: the plugin's, not the pool's.
      Memory: (100 + 192) * 1024 * 1024,
      MemorySwap: (100 + 192) * 1024 * 1024,
      PidsLimit: 60,
      NanoCpus: 5e8,
    });
    expect(a.Config.User).toBe('65534:65534');
    // What the kernel holds each to: the same cgroup limits, the same uid, seccomp, no_new_privs and capabilities.
    expect(cgroupLimits(a.State.Pid)).toEqual(cgroupLimits(b.State.Pid));
    expect(cgroupLimits(a.State.Pid)).toMatchObject({
      memory: String((100 + 192) * 1024 * 1024),
      pids: '60',
    });
    expect(runnerStatus(a.State.Pid)).toEqual(runnerStatus(b.State.Pid));
    expect(runnerStatus(a.State.Pid)).toMatchObject({
      NoNewPrivs: '1',
      CapEff: '0000000000000000',
      Seccomp: '2',
    });
    // What differs, and says so: its labels are the pool's for good (the engine cannot change them), and its
    // argv names the warm runner.
    expect(a.Config.Labels).toMatchObject({ 'reed.plugin.id': 'reed-warm-runner', 'reed.pool': 'runc' });
    expect(b.Config.Labels).toMatchObject({ 'reed.plugin.id': 'pool.big' });
    expect(b.Config.Labels['reed.pool']).toBeUndefined();

    // A plugin with the host's own limits is handed one without an update; still its own container.
    await add(host, 'pool.plain');
    expect(warm).toContain(idOf(host, 'pool.plain'));
    expect(idOf(host, 'pool.plain')).not.toBe(pooledId);
    await host.call('pool.plain', 'ok', '');
  }, 300_000);

  it('starts fresh what a warm container cannot be made into: the network, another tmpfs', async () => {
    const { host, pool } = await poolHost([plugins()], 1);
    const warm = idle(pool);
    await add(host, 'pool.net');
    await add(host, 'pool.tmp');
    expect(warm).not.toContain(idOf(host, 'pool.net'));
    expect(warm).not.toContain(idOf(host, 'pool.tmp'));
    expect(pool.stats.handedOut).toBe(0);
    expect(idle(pool)).toEqual(warm);
    expect((await inspect(idOf(host, 'pool.net'))).HostConfig.NetworkMode).toBe('bridge');
  }, 300_000);

  it('replaces a warm container killed before it is handed out; a plugin is never given the dead one', async () => {
    const { host, pool } = await poolHost([plugins()], 2);
    const [victim, other] = pool.idleRunners();
    await docker.getContainer(victim?.container?.id as string).kill();
    await victim?.exited;
    await pool.filled();
    expect(pool.stats.died).toBe(1);
    expect(pool.idleRunners()).not.toContain(victim);
    await add(host, 'pool.plain');
    expect(runnerOf(host, 'pool.plain')).toBe(other);
    await host.call('pool.plain', 'ok', '');
    // The dead one was removed.
    await expect(docker.getContainer(victim?.container?.id as string).inspect()).rejects.toMatchObject({
      statusCode: 404,
    });
  }, 300_000);

  it("leaves nothing after the host's close: containers, sandbox directories", async () => {
    const { host, pool } = await poolHost([plugins()], 2);
    await add(host, 'pool.plain');
    await pool.filled();
    const dirs = [...pool.idleRunners(), runnerOf(host, 'pool.plain')].map((r) => r.dir);
    expect(dirs.every((d) => existsSync(d))).toBe(true);
    await host.close();
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`reed.host.session=${host.session.id}`] },
    });
    expect(left).toEqual([]);
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
  }, 300_000);

  it('leaves nothing after the host is killed with SIGKILL, once the next host has swept', async () => {
    const runtimeDir = tempDir('reed-cpool-death-');
    const { child, ready } = await spawnHostFixture('pool-container-host', [runtimeDir, '2']);
    const [session, ...ids] = ready;
    expect(ids).toHaveLength(2);
    await killHost(child);
    const listed = () =>
      docker.listContainers({ all: true, filters: { label: [`reed.host.session=${session}`] } });
    expect((await listed()).map((c) => c.Id).sort()).toEqual([...ids].sort());
    const next = await startSweepingHost(runtimeDir);
    await next.close();
    // The sweep asked the engine to remove them; a loaded engine may still list one as "removing" for a while.
    const deadline = Date.now() + 60_000;
    while ((await listed()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await listed()).toEqual([]);
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
  }, 300_000);
});

describe('container mode: hostile plugins in pooled containers (runc)', () => {
  it('holds each to its own limits after the hand-out: escape, trace, pids, CPU, memory', async () => {
    // The host's tmpfs is the escape plugin's (8 MiB), so every one of them fits the pool.
    const { host, logs, pool } = await poolHost(
      [join(REPO, 'test/fixtures/native-container'), join(REPO, 'test/fixtures/native-process')],
      4,
      '[limits]\ntmpfs_mb = 8\n',
    );
    for (const id of ['container.escape', 'container.cpu-spin', 'proc.membomb', 'proc.trace']) {
      await add(host, id);
      await pool.filled();
    }
    const pooled = logs.filter((l) => l.msg === 'runner ready' && l.pooled === true).map((l) => l.pluginId);
    expect(pooled.sort()).toEqual(['container.cpu-spin', 'container.escape', 'proc.membomb', 'proc.trace']);

    const report = JSON.parse(text((await host.call('container.escape', 'attack')).output)) as Record<
      string,
      number
    >;
    expect(report.uid).toBe(65534);
    for (const [attempt, errno] of Object.entries(report)) {
      if (attempt !== 'uid') expect(errno, `${attempt} must fail`).not.toBe(0);
    }
    expect([28, 27]).toContain(report.fill_tmp);
    expect(report.docker_socket).toBe(2);

    const trace = JSON.parse(text((await host.call('proc.trace', 'attack')).output)) as Record<
      string,
      number
    >;
    expect(trace).toEqual(TRACE_DENIED);

    const bomb = JSON.parse(text((await host.call('container.escape', 'forkbomb')).output)) as {
      forked: number;
      errno: number;
    };
    expect(bomb.forked).toBeLessThan(64);
    expect(bomb.errno).toBe(11);

    // cpus = 0.5, applied by the engine's update at the hand-out (the pool's containers start with the host's 1).
    const spin = docker.getContainer(idOf(host, 'container.cpu-spin'));
    expect(((await spin.inspect()) as unknown as Inspected).HostConfig.NanoCpus).toBe(5e8);
    const cpuNs = async () =>
      ((await spin.stats({ stream: false })) as { cpu_stats: { cpu_usage: { total_usage: number } } })
        .cpu_stats.cpu_usage.total_usage;
    const before = await cpuNs();
    const t = performance.now();
    await host.call('container.cpu-spin', 'attack');
    const wallMs = performance.now() - t;
    expect(((await cpuNs()) - before) / 1e6 / wallMs).toBeLessThan(0.5 * 1.3);

    // A memory bomb is stopped by the memory limit (memory_mb = 32 through the update; the pool had the host's 64).
    await expect(host.call('proc.membomb', 'attack')).rejects.toMatchObject({ code: 'memory_limit' });
  }, 400_000);
});
