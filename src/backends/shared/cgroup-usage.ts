import { closeSync, constants, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** What a sandbox uses now (the metrics' `reed_sandbox_memory_bytes` and `reed_sandbox_cpu_seconds_total`). */
export interface SandboxUsage {
  /** Resident memory charged to it: cgroup `memory.current` (v2) or `memory.usage_in_bytes` (v1); WASM memory in mode none. */
  memoryBytes?: number;
  /** CPU time its processes used since it started: cgroup `cpu.stat` `usage_usec` (v2) or `cpuacct.usage` (v1). */
  cpuSeconds?: number;
}

const ROOT = '/sys/fs/cgroup';
/** Every file read here is the kernel's and small; a read is cut at this many bytes all the same. */
const MAX_READ = 64 * 1024;

/** A kernel file's text (cgroupfs, procfs: never a plugin's), at most MAX_READ bytes; undefined when unreadable. */
function readSmall(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    const buffer = Buffer.alloc(MAX_READ);
    let length = 0;
    while (length < MAX_READ) {
      const n = readSync(fd, buffer, length, MAX_READ - length, null);
      if (n === 0) break;
      length += n;
    }
    return buffer.toString('utf8', 0, length);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function number(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Usage of a cgroup v2 directory (absolute). */
export function usageV2(dir: string): SandboxUsage {
  const memoryBytes = number(readSmall(join(dir, 'memory.current')));
  const usec = /^usage_usec (\d+)$/m.exec(readSmall(join(dir, 'cpu.stat')) ?? '')?.[1];
  return {
    ...(memoryBytes === undefined ? {} : { memoryBytes }),
    ...(usec === undefined ? {} : { cpuSeconds: Number(usec) / 1e6 }),
  };
}

/** Usage from cgroup v1 directories: the memory hierarchy's and the cpuacct one's (either may be missing). */
export function usageV1(memoryDir: string | undefined, cpuacctDir: string | undefined): SandboxUsage {
  const memoryBytes =
    memoryDir === undefined ? undefined : number(readSmall(join(memoryDir, 'memory.usage_in_bytes')));
  const ns = cpuacctDir === undefined ? undefined : number(readSmall(join(cpuacctDir, 'cpuacct.usage')));
  return {
    ...(memoryBytes === undefined ? {} : { memoryBytes }),
    ...(ns === undefined ? {} : { cpuSeconds: ns / 1e9 }),
  };
}

/**
 * The usage of the cgroup a process lives in (a container's init: the engine made its cgroup), found through
 * `/proc/<pid>/cgroup`; undefined when the process is gone or its cgroup cannot be read.
 */
export function usageOfPid(pid: number, root = ROOT): SandboxUsage | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const text = readSmall(`/proc/${pid}/cgroup`);
  if (text === undefined) return undefined;
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(\/.*)$/.exec(line);
    // The root cgroup's figures are the whole machine's: never a sandbox's.
    if (match === null || match[2] === '/' || (match[2] as string).includes('..')) continue;
    for (const controller of (match[1] as string).split(',')) paths.set(controller, match[2] as string);
  }
  const v2 = paths.get('');
  const memory = paths.get('memory');
  const cpuacct = paths.get('cpuacct');
  if (memory === undefined && cpuacct === undefined) {
    return v2 === undefined ? undefined : usageV2(join(root, v2));
  }
  return usageV1(
    memory === undefined ? undefined : join(root, 'memory', memory),
    cpuacct === undefined ? undefined : join(root, 'cpuacct', cpuacct),
  );
}
