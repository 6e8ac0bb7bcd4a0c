import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  write,
  writeFileSync,
} from 'node:fs';
import { join, relative, sep } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isAlive, pidNamespaceInode as pidNamespace } from '../../process-identity.js';
import type { HostSession } from '../shared/session.js';

const ROOT = '/sys/fs/cgroup';

/** One write(2) of `text` on the thread pool (a cgroup file takes a pid per write, whole or not at all). */
const writeFd = (fd: number, text: string) =>
  new Promise<void>((resolve, reject) => write(fd, text, (error) => (error ? reject(error) : resolve())));

/**
 * A runner's cgroup name: the owning host (pid namespace, pid, start time: what the sweep needs to tell a dead
 * host from a live one), its session and a per-sandbox suffix. `h<pidns>.<pid>.<start>-<session8>-<suffix>`.
 */
export function cgroupName(session: HostSession, suffix: string): string {
  return `h${pidNamespace()}.${session.pid}.${session.start || '0'}-${session.id.slice(0, 8)}-${suffix}`;
}

/**
 * The directories under which runner and tenant cgroups live: v2's one tree, or `reed` in every v1 hierarchy (a
 * runner's are in memory, pids and cpu; a container under a tenant's CgroupParent has the engine make the tenant's
 * in the others too). Real directories only: a v1 mount point such as `cpu,cpuacct` may also have links to it.
 */
function reedParents(root: string): string[] {
  if (existsSync(join(root, 'cgroup.controllers'))) return [join(root, 'reed')];
  try {
    return readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(root, e.name, 'reed'));
  } catch {
    return [];
  }
}

/** The CFS period the quota is a share of (the kernel's default, 100 ms). */
const CPU_PERIOD_US = 100_000;
/** `cpus` CPUs' worth of each period; the kernel refuses quotas under 1 ms. */
const cpuQuotaUs = (cpus: number) => Math.max(1_000, Math.round(cpus * CPU_PERIOD_US));

/**
 * Kills every process left in a runner cgroup whose host is dead (same pid namespace, and its pid and start time
 * no longer a live process), and removes the cgroup. A runner's pid namespace already dies with its host
 * (bubblewrap's --die-with-parent), so this is the second line: whatever escaped that (a host killed between
 * spawning bwrap and bwrap arming its death signal) is found by its cgroup, which no process can leave.
 * Cgroups of live hosts, of hosts in other pid namespaces, and names of another form are left alone.
 */
export function sweepCgroups(logger?: Logger, root = ROOT): { cgroups: number; processes: number } {
  const ns = pidNamespace();
  let cgroups = 0;
  let processes = 0;
  for (const parent of reedParents(root)) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = /^h(\d+)\.(\d+)\.(\d+)-/.exec(name);
      if (m === null || m[1] !== ns || isAlive(Number(m[2]), m[3] === '0' ? '' : (m[3] as string))) continue;
      // A tenant's cgroup (TenantCgroup) holds its runners' cgroups: those go first.
      const swept = removeTree(join(parent, name));
      processes += swept.processes;
      if (swept.removed) cgroups++;
    }
  }
  if (cgroups > 0) logger?.info({ cgroups, processes }, 'killed what dead hosts left in runner cgroups');
  return { cgroups, processes };
}

/**
 * Kills and removes a cgroup's children (cgroups are directories: no link can be placed in a cgroup file system,
 * and `isDirectory` of a dirent does not follow one anyway), then the cgroup itself.
 */
function removeTree(dir: string): { removed: boolean; processes: number } {
  let processes = 0;
  let entries: import('node:fs').Dirent[] = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {}
  for (const entry of entries)
    if (entry.isDirectory()) processes += removeTree(join(dir, entry.name)).processes;
  processes += killAll(dir);
  return { removed: removeDir(dir), processes };
}

/**
 * One round of killAll: SIGKILLs every process in the cgroup; undefined once it is empty (or gone), else how many
 * were signalled.
 */
function killRound(dir: string): number | undefined {
  let pids: number[];
  try {
    pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return undefined;
  }
  if (pids.length === 0) return undefined;
  let killed = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {}
  }
  return killed;
}

/** rmdir: true once removed, false when it was not there, undefined while its last processes are still dying. */
function rmdirRound(dir: string): boolean | undefined {
  try {
    rmdirSync(dir);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? false : undefined;
  }
}

/** How many times killAll signals and removeDir tries, and how long each waits between two (ms). */
const KILL_ROUNDS = 50;
const RMDIR_TRIES = 20;
const ROUND_MS = 10;

/** SIGKILLs every process in a cgroup until it is empty (a process may fork while the others are killed). */
function killAll(dir: string): number {
  let killed = 0;
  for (let round = 0; round < KILL_ROUNDS; round++) {
    const n = killRound(dir);
    if (n === undefined) return killed;
    killed += n;
    sleep(ROUND_MS);
  }
  return killed;
}

/** rmdir, retried while the last processes finish dying. */
function removeDir(dir: string): boolean {
  for (let i = 0; i < RMDIR_TRIES; i++) {
    const removed = rmdirRound(dir);
    if (removed !== undefined) return removed;
    sleep(ROUND_MS);
  }
  return false;
}

/**
 * killAll then removeDir for one runner's cgroup, waiting between rounds on a timer, not on the host's thread
 * (Atomics.wait): a runner's cgroup is removed while the host serves every other plugin, and its processes take a
 * round or two to die.
 */
async function killAndRemove(dirs: readonly string[]): Promise<void> {
  for (const dir of dirs)
    for (let round = 0; round < KILL_ROUNDS && killRound(dir) !== undefined; round++) await delay(ROUND_MS);
  for (const dir of dirs)
    for (let i = 0; i < RMDIR_TRIES && rmdirRound(dir) === undefined; i++) await delay(ROUND_MS);
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * A cgroup for one runner, with a memory limit (no swap), a process limit and, where the cpu controller is there,
 * a CPU quota (`limits.cpus`: threads a plugin leaves running after a call returns are held to it too), where the
 * host may create one (root, cgroup v1 or v2 mounted writable). Otherwise `create` returns undefined and the caller
 * reports the limits as not enforced; `cpuLimited` says whether the quota is.
 */
export class RunnerCgroup {
  private constructor(
    readonly dirs: string[],
    readonly version: 1 | 2,
    public cpuLimited: boolean,
    /** The cgroup file system's root (v2: the controllers are handed down from it). */
    private readonly root = ROOT,
  ) {}

  /**
   * `tenant`: the tenant's cgroup (TenantCgroup) the runner's goes under, so the tenant's memory.max and
   * cpu.weight bound all its runners together; absent, under `reed/` as before tenants existed. `cpuHierarchy`
   * (v1): join the cpu hierarchy even without a quota, so that one can be set later (`setLimits`: warm runners).
   */
  static create(
    name: string,
    limits: { memoryBytes: number; pids: number; cpus?: number | undefined },
    root = ROOT,
    tenant?: TenantCgroup,
    cpuHierarchy = false,
  ): RunnerCgroup | undefined {
    const base = tenant === undefined ? 'reed' : join('reed', tenant.name);
    try {
      if (existsSync(join(root, 'cgroup.controllers'))) {
        const dir = join(root, base, name);
        mkdirSync(dir, { recursive: true });
        enableControllersV2(root, join(root, base), '+memory +pids');
        writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
        if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
        writeFileSync(join(dir, 'pids.max'), String(limits.pids));
        const cpu = limits.cpus !== undefined && cpuMaxV2(root, join(root, base), dir, limits.cpus);
        return new RunnerCgroup([dir], 2, cpu, root);
      }
      const memory = join(root, 'memory', base, name);
      const pids = join(root, 'pids', base, name);
      if (!existsSync(join(root, 'memory')) || !existsSync(join(root, 'pids'))) return undefined;
      mkdirSync(memory, { recursive: true });
      mkdirSync(pids, { recursive: true });
      writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      const memsw = join(memory, 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
      writeFileSync(join(memory, 'memory.swappiness'), '0');
      writeFileSync(join(pids, 'pids.max'), String(limits.pids));
      // Under a tenant with a CPU weight the runner must be in the cpu hierarchy, quota or not.
      const cpu =
        limits.cpus === undefined && tenant?.cpuWeighted !== true && !cpuHierarchy
          ? undefined
          : cpuQuotaV1(root, join(base, name), limits.cpus);
      return new RunnerCgroup(
        cpu === undefined ? [memory, pids] : [memory, pids, cpu],
        1,
        cpu !== undefined && limits.cpus !== undefined,
        root,
      );
    } catch {
      return undefined;
    }
  }

  /**
   * Whether this runner's own memory limit was ever reached (v1: its counters' failcnt; v2: `max` in its
   * memory.events). An OOM kill without it came from above: its tenant's memory.max.
   */
  ownLimitHit(): boolean {
    const dir = this.dirs[0] as string;
    try {
      if (this.version === 2) return /^max [1-9]/m.test(readFileSync(join(dir, 'memory.events'), 'utf8'));
      const failed = (file: string) => {
        try {
          return Number(readFileSync(join(dir, file), 'utf8')) > 0;
        } catch {
          return false;
        }
      };
      return failed('memory.failcnt') || failed('memory.memsw.failcnt');
    } catch {
      return true;
    }
  }

  /**
   * A warm runner handed to a plugin (src/backends/pool/): the plugin's memory, pids and CPU limits replace the
   * pool's, in the cgroup the runner is already in. Throws when one cannot be written: the runner must then not be
   * sent the plugin. A CPU quota the host cannot set is reported as a fresh runner's is (`cpuLimited` false).
   */
  setLimits(limits: { memoryBytes: number; pids: number; cpus?: number | undefined }): void {
    const [first, pidsDir, cpuDir] = this.dirs as [string, string?, string?];
    if (this.version === 2) {
      writeFileSync(join(first, 'memory.max'), String(limits.memoryBytes));
      writeFileSync(join(first, 'pids.max'), String(limits.pids));
      this.cpuLimited =
        limits.cpus !== undefined && cpuMaxV2(this.root, join(first, '..'), first, limits.cpus);
      if (limits.cpus === undefined && existsSync(join(first, 'cpu.max')))
        writeFileSync(join(first, 'cpu.max'), `max ${CPU_PERIOD_US}`);
      return;
    }
    // v1: memory+swap must stay at or above memory: raised, it goes first; lowered, last.
    const memory = join(first, 'memory.limit_in_bytes');
    const memsw = join(first, 'memory.memsw.limit_in_bytes');
    const current = Number(readFileSync(memory, 'utf8'));
    const withSwap = existsSync(memsw);
    if (withSwap && limits.memoryBytes >= current) writeFileSync(memsw, String(limits.memoryBytes));
    writeFileSync(memory, String(limits.memoryBytes));
    if (withSwap && limits.memoryBytes < current) writeFileSync(memsw, String(limits.memoryBytes));
    if (pidsDir !== undefined) writeFileSync(join(pidsDir, 'pids.max'), String(limits.pids));
    this.cpuLimited = false;
    if (cpuDir !== undefined) {
      writeFileSync(join(cpuDir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeFileSync(
        join(cpuDir, 'cpu.cfs_quota_us'),
        limits.cpus === undefined ? '-1' : String(cpuQuotaUs(limits.cpus)),
      );
      this.cpuLimited = limits.cpus !== undefined;
    }
  }

  /**
   * Joins every hierarchy with each of `pids` (in v1 a process left out of the cpu one would run unthrottled). On the
   * thread pool: the kernel makes the first move of a burst wait for an RCU grace period (cgroup v1 here: ~8-16 ms
   * for the first write, ~0.05 ms for the next ones), which would hold the host's thread. Each hierarchy's
   * cgroup.procs is opened once here (an open takes no lock) and every write is one trip to the pool, all at once:
   * a writeFile per pid and hierarchy, one after another, was three trips each (18 for a runner's two pids in three
   * hierarchies), each waiting for the event loop's turn. Rejects if a pid cannot join.
   */
  async add(...pids: number[]): Promise<void> {
    const fds: number[] = [];
    try {
      for (const dir of this.dirs) fds.push(openSync(join(dir, 'cgroup.procs'), 'w'));
      await Promise.all(fds.flatMap((fd) => pids.map((pid) => writeFd(fd, String(pid)))));
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }

  /**
   * v1: the files through which a single-threaded process joins every hierarchy of this cgroup by itself, writing
   * "0" to each before it execs (runner-process.ts: bwrap's starter), so that bwrap and the init it forks are in
   * the cgroup from their start. `tasks` moves the calling thread, which is then the whole process, and the kernel
   * lets a thread move itself without taking every thread group's lock for writing, whose first taking in a burst
   * waits for an RCU grace period (`add`: 10-14 ms for the first write here; "0" to `tasks` 0.06-0.2 ms, quiet).
   * undefined on v2, where a process moving itself still takes that lock.
   */
  selfJoinFiles(): string[] | undefined {
    return this.version === 1 ? this.dirs.map((dir) => join(dir, 'tasks')) : undefined;
  }

  /** Whether `pid` is in this cgroup in every hierarchy it has (its /proc/PID/cgroup); false if it is gone. */
  holds(pid: number): boolean {
    let lines: string[];
    try {
      lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    } catch {
      return false;
    }
    return this.dirs.every((dir) => {
      // v1: <root>/<hierarchy>/<path>, listed as "id:controllers:/<path>" (cpu may share a line with cpuacct).
      const [hierarchy = '', ...path] = relative(this.root, dir).split(sep);
      const want = `/${path.join('/')}`;
      return lines.some((line) => {
        const [, controllers = '', at] = line.split(':');
        return this.version === 2
          ? controllers === '' && at === `/${relative(this.root, dir)}`
          : controllers.split(',').includes(hierarchy) && at === want;
      });
    });
  }

  /** Whether the kernel's OOM killer struck in this cgroup. */
  oomKilled(): boolean {
    try {
      const dir = this.dirs[0] as string;
      if (this.version === 2) return /oom_kill [1-9]/.test(readFileSync(join(dir, 'memory.events'), 'utf8'));
      return (
        /oom_kill [1-9]/.test(readFileSync(join(dir, 'memory.oom_control'), 'utf8')) ||
        (Number(readFileSync(join(dir, 'memory.failcnt'), 'utf8')) > 0 &&
          /under_oom 1/.test(readFileSync(join(dir, 'memory.oom_control'), 'utf8')))
      );
    } catch {
      return false;
    }
  }

  pids(): number[] {
    const out = new Set<number>();
    for (const dir of this.dirs) {
      try {
        for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n'))
          if (line) out.add(Number(line));
      } catch {}
    }
    return [...out];
  }

  /** Kills every process left in it (until none is left), then removes it. */
  remove(): Promise<void> {
    return killAndRemove(this.dirs);
  }
}

/**
 * v2: hands `controllers` (`+memory +pids`) down from the root to `parent`, each cgroup's subtree_control in turn:
 * a cgroup may enable for its children only what its own parent enabled for it. systemd (Debian 12) enables memory
 * and pids in the root's, not cpu: without this, the cpu controller never reached `reed/` (found by
 * scripts/cgroup2-vm.sh, the first run of this code on v2).
 */
function enableControllersV2(root: string, parent: string, controllers: string): void {
  let dir = root;
  writeFileSync(join(dir, 'cgroup.subtree_control'), controllers);
  for (const part of relative(root, parent).split(sep).filter(Boolean)) {
    dir = join(dir, part);
    writeFileSync(join(dir, 'cgroup.subtree_control'), controllers);
  }
}

/** v2: the cpu controller down to the runner's parent, then `cpu.max`. False where the controller is not available. */
function cpuMaxV2(root: string, parent: string, dir: string, cpus: number): boolean {
  try {
    enableControllersV2(root, parent, '+cpu');
    writeFileSync(join(dir, 'cpu.max'), `${cpuQuotaUs(cpus)} ${CPU_PERIOD_US}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * v1: a cgroup in the cpu hierarchy (`path` under it) with the CFS quota when `cpus` is given; undefined where
 * that hierarchy is not mounted.
 */
function cpuQuotaV1(root: string, path: string, cpus: number | undefined): string | undefined {
  if (!existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))) return undefined;
  const dir = join(root, 'cpu', path);
  try {
    mkdirSync(dir, { recursive: true });
    if (cpus !== undefined) {
      writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(cpuQuotaUs(cpus)));
    }
    return dir;
  } catch {
    removeDir(dir);
    return undefined;
  }
}

/** cgroup v2's cpu.weight (1-10000, default 100) as v1's cpu.shares (2-262144, default 1024), as runc maps it back. */
export const weightToShares = (weight: number): number =>
  Math.max(2, Math.min(262_144, Math.round(2 + ((weight - 1) * 262_142) / 9_999)));

/**
 * A tenant's cgroup: the parent of all its runners' cgroups (`reed/<name>/<runner>`), whose memory limit (no swap)
 * bounds what all the tenant's runners hold together (`memory_mb`) and whose CPU weight (`cpu_weight`; v1:
 * cpu.shares) is the tenant's share of the CPU against the others when the CPU is contended. Named as a runner's
 * cgroup is (cgroupName: the host's pid, start time and session), so `sweepCgroups` finds it when its host is dead
 * and removes it with the runners' cgroups in it.
 */
export class TenantCgroup {
  private constructor(
    readonly name: string,
    readonly dirs: string[],
    readonly version: 1 | 2,
    readonly cpuWeighted: boolean,
    private readonly root: string,
  ) {}

  static create(
    name: string,
    quotas: { memoryBytes?: number | undefined; cpuWeight?: number | undefined },
    root = ROOT,
  ): TenantCgroup | undefined {
    const made: string[] = [];
    const mk = (dir: string) => {
      mkdirSync(dir, { recursive: true });
      made.push(dir);
      return dir;
    };
    try {
      if (existsSync(join(root, 'cgroup.controllers'))) {
        const dir = mk(join(root, 'reed', name));
        enableControllersV2(root, dir, '+memory +pids');
        if (quotas.memoryBytes !== undefined) {
          writeFileSync(join(dir, 'memory.max'), String(quotas.memoryBytes));
          if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
        }
        // Without the cpu controller the memory limit still holds; cpuWeighted says the weight does not.
        let cpu = false;
        try {
          enableControllersV2(root, dir, '+cpu');
          if (quotas.cpuWeight !== undefined)
            writeFileSync(join(dir, 'cpu.weight'), String(quotas.cpuWeight));
          cpu = quotas.cpuWeight !== undefined;
        } catch {}
        return new TenantCgroup(name, [dir], 2, cpu, root);
      }
      if (!existsSync(join(root, 'memory')) || !existsSync(join(root, 'pids'))) return undefined;
      const memory = mk(join(root, 'memory', 'reed', name));
      const pids = mk(join(root, 'pids', 'reed', name));
      if (quotas.memoryBytes !== undefined) {
        writeFileSync(join(memory, 'memory.limit_in_bytes'), String(quotas.memoryBytes));
        const memsw = join(memory, 'memory.memsw.limit_in_bytes');
        if (existsSync(memsw)) writeFileSync(memsw, String(quotas.memoryBytes));
      }
      const dirs = [memory, pids];
      if (existsSync(join(root, 'cpu', 'cpu.shares'))) {
        const cpu = mk(join(root, 'cpu', 'reed', name));
        if (quotas.cpuWeight !== undefined)
          writeFileSync(join(cpu, 'cpu.shares'), String(weightToShares(quotas.cpuWeight)));
        dirs.push(cpu);
      }
      const weighted = quotas.cpuWeight !== undefined && dirs.length === 3;
      return new TenantCgroup(name, dirs, 1, weighted, root);
    } catch {
      for (const dir of made.reverse()) removeDir(dir);
      return undefined;
    }
  }

  /**
   * How often its memory limit was reached so far (v1: failcnt, memory's and memory+swap's; v2: `oom` in
   * memory.events.local): a container
   * killed while this moved was killed for the tenant's memory_mb.
   */
  memoryFailures(): number {
    const dir = this.dirs[0] as string;
    try {
      if (this.version === 2)
        return Number(/^oom (\d+)/m.exec(readFileSync(join(dir, 'memory.events.local'), 'utf8'))?.[1] ?? 0);
      // With swap accounting the memory+swap counter (same limit) is charged first, and fails first.
      const count = (file: string) => {
        try {
          return Number(readFileSync(join(dir, file), 'utf8')) || 0;
        } catch {
          return 0;
        }
      };
      // And whether its high-water mark reached the limit: on this kernel (6.18) a charge that reaches a parent's
      // limit through a container's cgroup was seen to leave failcnt at 0. Monotonic, as the count must be.
      const limit = count('memory.limit_in_bytes');
      const reached = limit > 0 && count('memory.max_usage_in_bytes') >= limit - 65_536 ? 1 : 0;
      return count('memory.failcnt') + count('memory.memsw.failcnt') + reached;
    } catch {
      return 0;
    }
  }

  /**
   * Kills whatever is left in its runners' cgroups and removes them, then itself; in v1 also the tenant's cgroup
   * in the hierarchies a container engine made it in (cpuset, blkio...).
   */
  remove(): void {
    for (const dir of this.dirs) removeTree(dir);
    if (this.version === 1)
      for (const parent of reedParents(this.root)) {
        const dir = join(parent, this.name);
        if (existsSync(dir)) removeTree(dir);
      }
  }
}

/**
 * A tenant's cgroup as its runners share it: made with the first runner that starts, removed (with anything left
 * in it) when the last one is destroyed, so a closed host leaves none; a host killed leaves it to the sweep.
 */
export class TenantCgroupSlot {
  #cgroup: TenantCgroup | undefined;
  #users = 0;

  constructor(
    readonly name: string,
    readonly quotas: {
      memoryMb?: number | undefined;
      cpuWeight?: number | undefined;
      /** The tenant's id, for errors. */
      tenant?: string | undefined;
    },
    private readonly root?: string,
  ) {}

  /** The tenant's cgroup for one more runner (undefined where the host cannot make cgroups); `release` after. */
  acquire(): TenantCgroup | undefined {
    this.#users++;
    this.#cgroup ??= TenantCgroup.create(
      this.name,
      {
        memoryBytes: this.quotas.memoryMb === undefined ? undefined : this.quotas.memoryMb * 1024 * 1024,
        cpuWeight: this.quotas.cpuWeight,
      },
      ...(this.root === undefined ? [] : [this.root]),
    );
    return this.#cgroup;
  }

  release(): void {
    if (--this.#users > 0) return;
    this.#users = 0;
    this.#cgroup?.remove();
    this.#cgroup = undefined;
  }
}
