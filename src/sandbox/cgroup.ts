import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A cgroup for one runner, with a memory limit (no swap) and a process limit, where the host may create one
 * (root, cgroup v1 or v2 mounted writable). Otherwise `create` returns undefined and the caller reports the
 * limits as not enforced.
 */
export class RunnerCgroup {
  private constructor(
    readonly dirs: string[],
    readonly version: 1 | 2,
  ) {}

  static create(
    name: string,
    limits: { memoryBytes: number; pids: number },
    root = '/sys/fs/cgroup',
  ): RunnerCgroup | undefined {
    try {
      if (existsSync(join(root, 'cgroup.controllers'))) {
        const dir = join(root, 'reed', name);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(root, 'reed', 'cgroup.subtree_control'), '+memory +pids');
        writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
        if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
        writeFileSync(join(dir, 'pids.max'), String(limits.pids));
        return new RunnerCgroup([dir], 2);
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
      return new RunnerCgroup([memory, pids], 1);
    } catch {
      return undefined;
    }
  }

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

  /** Kills every process left in it, then removes it. */
  remove(): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    for (const dir of this.dirs) {
      for (let i = 0; i < 20; i++) {
        try {
          rmdirSync(dir);
          break;
        } catch {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        }
      }
    }
  }
}
