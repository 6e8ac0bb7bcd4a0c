import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/**
 * Who owns a sandbox: this host process, identified by pid and kernel start time (so a reused pid is not
 * mistaken for a live host), and a random session id (also the Docker label of container mode).
 */
export interface HostSession {
  id: string;
  pid: number;
  start: string;
}

export interface SandboxOwner extends HostSession {
  pluginId: string;
  runnerPid?: number;
  runnerStart?: string;
}

export const OWNER_FILE = 'owner.json';

export function newSession(): HostSession {
  return { id: randomBytes(8).toString('hex'), pid: process.pid, start: processStart(process.pid) ?? '' };
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

export function isAlive(pid: number, start: string): boolean {
  const now = processStart(pid);
  return now !== undefined && (start === '' || now === start);
}

/**
 * Removes what dead hosts left under `<runtimeDir>/sandboxes`: each sandbox directory whose owner is no longer
 * alive, after killing its runner if that runner is still alive and is the one recorded (same pid and start
 * time, running the sandbox-runner). Never touches a live host's sandboxes.
 */
export function sweepOrphans(runtimeDir: string, logger?: Logger): { dirs: number; runners: number } {
  const root = join(runtimeDir, 'sandboxes');
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return { dirs: 0, runners: 0 };
  }
  let dirs = 0;
  let runners = 0;
  for (const name of names) {
    const dir = join(root, name);
    let owner: SandboxOwner | undefined;
    try {
      owner = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as SandboxOwner;
    } catch {
      owner = undefined; // half-made by a host that died at once: nothing alive can be using it
    }
    if (owner !== undefined && isAlive(owner.pid, owner.start)) continue;
    if (
      owner?.runnerPid !== undefined &&
      owner.runnerStart !== undefined &&
      isAlive(owner.runnerPid, owner.runnerStart)
    ) {
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${owner.runnerPid}/cmdline`, 'utf8');
      } catch {}
      if (cmdline.includes('sandbox-runner')) {
        try {
          process.kill(-owner.runnerPid, 'SIGKILL');
        } catch {
          try {
            process.kill(owner.runnerPid, 'SIGKILL');
          } catch {}
        }
        runners++;
      }
    }
    rmSync(dir, { recursive: true, force: true });
    dirs++;
  }
  if (dirs > 0) logger?.info({ dirs, runners }, 'removed sandboxes left by dead hosts');
  return { dirs, runners };
}
