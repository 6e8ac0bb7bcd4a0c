// Who a process is, for sweeps of what dead processes left (build contexts, cache temporaries, cgroups, sandbox
// directories). A pid alone names a process only in its pid namespace and only while it lives: hosts in other
// namespaces (containers sharing a volume) have pids of their own, and pids are reused. So what a host leaves
// carries its mark `h<pidns>.<pid>.<start>`, and a sweep removes only what a process of its own namespace left that
// is no longer there (same pid, same start time).
import { readFileSync, readlinkSync } from 'node:fs';

/** Whether process `pid` exists (EPERM: it does, as another user's). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined when the process is gone or
 * a zombie (dead, only not yet reaped by its parent).
 */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** Whether the process `pid` that started at `start` still runs ('' : any process of that pid). */
export function isAlive(pid: number, start: string): boolean {
  const now = processStart(pid);
  return now !== undefined && (start === '' || now === start);
}

/** The inode of this process's pid namespace ('0' when it cannot be read). */
export function pidNamespaceInode(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
}

let mark: string | undefined;
/** This process's mark, `h<pidns>.<pid>.<start>` (start '0' when unknown): for names of what it leaves. */
export function ownMark(): string {
  mark ??= `h${pidNamespaceInode()}.${process.pid}.${processStart(process.pid) || '0'}`;
  return mark;
}

/** The pattern of a mark inside a larger name (three groups: namespace, pid, start). */
export const MARK_PATTERN = 'h(\\d+)\\.(\\d+)\\.(\\d+)';

/**
 * Whether what a mark's owner left may be removed: the owner was of this pid namespace and is gone. Another
 * namespace's, this process's own and a live one's are left.
 */
export function markOwnerGone(ns: string, pid: number, start: string): boolean {
  if (ns !== pidNamespaceInode() || !Number.isSafeInteger(pid) || pid <= 1) return false;
  if (pid === process.pid) return false;
  return !isAlive(pid, start === '0' ? '' : start);
}
