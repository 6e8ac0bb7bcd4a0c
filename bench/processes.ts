// Processes seen through /proc, for the benches (the soak) and the tests (test/helpers/processes.ts re-exports it).
import { readdirSync, readFileSync } from 'node:fs';

/** Alive and not a zombie (a zombie is dead, only not yet reaped by its parent). */
export function alive(pid: number): boolean {
  try {
    return !/State:\s+Z/.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** pid -> parent pid, for every process. */
export function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      out.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Every process's command line (its arguments joined by spaces), read from /proc: no `ps` whose output a busy
 * machine can push past a child's output buffer (execFileSync's 1 MiB: ENOBUFS in a loaded CI run).
 */
export function commandLines(): string[] {
  const out: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const line = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (line !== '') out.push(line);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Pids of every descendant of `root`, from one read of /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, parent] of parents()) {
    const list = children.get(parent) ?? [];
    list.push(pid);
    children.set(parent, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.pop() as number) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/** The node process that runs the sandbox-runner at or below `root` (the process the host spawned: bwrap). */
export function runnerNodePid(root: number): number {
  const tree = parents();
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0] === process.execPath && argv.some((a) => a.endsWith('runner/main.js'))) return pid;
    } catch {
      // gone meanwhile
    }
    for (const [child, parent] of tree) if (parent === pid) queue.push(child);
  }
  throw new Error(`no sandbox-runner node process under pid ${root}`);
}
