import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type HostSession, isAlive } from '../shared/session.js';

const ROOT = '/sys/fs/cgroup';

/** This process's pid namespace (its inode): a host pid means something only in the namespace it was read in. */
const pidNamespace = (): string => {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
};

/**
 * A runner's cgroup name: the owning host (pid namespace, pid, start time: what the sweep needs to tell a dead
 * host from a live one), its session and a per-sandbox suffix. `h<pidns>.<pid>.<start>-<session8>-<suffix>`.
 */
export function cgroupName(session: HostSession, suffix: string): string {
  return `h${pidNamespace()}.${session.pid}.${session.start || '0'}-${session.id.slice(0, 8)}-${suffix}`;
}

/** The directories under which runner cgroups live: v2's one tree, or v1's memory, pids and cpu hierarchies. */
function reedParents(root: string): string[] {
  if (existsSync(join(root, 'cgroup.controllers'))) return [join(root, 'reed')];
  return [join(root, 'memory', 'reed'), join(root, 'pids', 'reed'), join(root, 'cpu', 'reed')];
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
      processes += killAll(join(parent, name));
      if (removeDir(join(parent, name))) cgroups++;
    }
  }
  if (cgroups > 0) logger?.info({ cgroups, processes }, 'killed what dead hosts left in runner cgroups');
  return { cgroups, processes };
}

/** SIGKILLs every process in a cgroup until it is empty (a process may fork while the others are killed). */
function killAll(dir: string): number {
  let killed = 0;
  for (let round = 0; round < 50; round++) {
    let pids: number[];
    try {
      pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return killed;
    }
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {}
    }
    sleep(10);
  }
  return killed;
}

/** rmdir, retried while the last processes finish dying. */
function removeDir(dir: string): boolean {
  for (let i = 0; i < 20; i++) {
    try {
      rmdirSync(dir);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      sleep(10);
    }
  }
  return false;
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
    readonly cpuLimited: boolean,
  ) {}

  static create(
    name: string,
    limits: { memoryBytes: number; pids: number; cpus?: number },
    root = ROOT,
  ): RunnerCgroup | undefined {
    try {
      if (existsSync(join(root, 'cgroup.controllers'))) {
        const dir = join(root, 'reed', name);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(root, 'reed', 'cgroup.subtree_control'), '+memory +pids');
        writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
        if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
        writeFileSync(join(dir, 'pids.max'), String(limits.pids));
        return new RunnerCgroup([dir], 2, limits.cpus !== undefined && cpuMaxV2(root, dir, limits.cpus));
      }
      const memory = join(root, 'memory', 'reed', name);
      const pids = join(root, 'pids', 'reed', name);
      if (!existsSync(join(root, 'memory')) || !existsSync(join(root, 'pids'))) return undefined;
      mkdirSync(memory, { recursive: true });
      mkdirSync(pids, { recursive: true });
      writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      const memsw = join(memory, 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
      writeFileSync(join(memory, 'memory.swappiness'), '0');
      writeFileSync(join(pids, 'pids.max'), String(limits.pids));
      const cpu = limits.cpus === undefined ? undefined : cpuQuotaV1(root, name, limits.cpus);
      return new RunnerCgroup(cpu === undefined ? [memory, pids] : [memory, pids, cpu], 1, cpu !== undefined);
    } catch {
      return undefined;
    }
  }

  /** Joins every hierarchy: in v1 a process left out of the cpu one would run unthrottled. */
  add(pid: number): void {
    for (const dir of this.dirs) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
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
  remove(): void {
    for (const dir of this.dirs) killAll(dir);
    for (const dir of this.dirs) removeDir(dir);
  }
}

/** v2: the cpu controller for the reed subtree, then `cpu.max`. False where the controller is not available. */
function cpuMaxV2(root: string, dir: string, cpus: number): boolean {
  try {
    writeFileSync(join(root, 'reed', 'cgroup.subtree_control'), '+cpu');
    writeFileSync(join(dir, 'cpu.max'), `${cpuQuotaUs(cpus)} ${CPU_PERIOD_US}`);
    return true;
  } catch {
    return false;
  }
}

/** v1: a cgroup in the cpu hierarchy with the CFS quota; undefined where that hierarchy is not mounted. */
function cpuQuotaV1(root: string, name: string, cpus: number): string | undefined {
  if (!existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))) return undefined;
  const dir = join(root, 'cpu', 'reed', name);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(cpuQuotaUs(cpus)));
    return dir;
  } catch {
    removeDir(dir);
    return undefined;
  }
}
