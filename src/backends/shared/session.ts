import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isAlive, processStart } from '../../process-identity.js';
import { removeTree } from './safe-remove.js';

/**
 * Who owns a sandbox: this host process, identified by pid and kernel start time (so a reused pid is not
 * mistaken for a live host), and a random session id (also the Docker label of container mode).
 */
export interface HostSession {
  id: string;
  /** The tenant the host serves (src/tenants/): its events carry it. Absent for a host made outside a registry. */
  tenant?: string;
  pid: number;
  start: string;
}

export interface SandboxOwner extends HostSession {
  pluginId: string;
  runnerPid?: number;
  runnerStart?: string;
}

export const OWNER_FILE = 'owner.json';

/** What every event of this host names: its session, and its tenant when it has one. */
export function eventSource(session: Pick<HostSession, 'id' | 'tenant'>): {
  session: string;
  tenant?: string;
} {
  return session.tenant === undefined
    ? { session: session.id }
    : { session: session.id, tenant: session.tenant };
}

export function newSession(): HostSession {
  return { id: randomBytes(8).toString('hex'), pid: process.pid, start: processStart(process.pid) ?? '' };
}

/** Largest owner record read back; a real one is about 200 bytes. */
const MAX_OWNER_BYTES = 64 * 1024;

/**
 * The owner record of a sandbox directory, or undefined. Opened without following a link and without blocking
 * (a FIFO or a device planted there is no record), read only when it is a small regular file.
 */
export function readOwner(dir: string): SandboxOwner | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, OWNER_FILE), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_OWNER_BYTES) return undefined;
    const buf = Buffer.alloc(st.size);
    const n = readSync(fd, buf, 0, st.size, 0);
    const owner = JSON.parse(buf.toString('utf8', 0, n)) as Partial<SandboxOwner> | null;
    // Pids it names get signals: only plausible ones (never 0, 1 or negative: kill(-1) is everyone).
    const pid = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 1;
    if (owner === null || typeof owner !== 'object' || !pid(owner.pid) || typeof owner.start !== 'string')
      return undefined;
    if (owner.runnerPid !== undefined && (!pid(owner.runnerPid) || typeof owner.runnerStart !== 'string'))
      return undefined;
    return owner as SandboxOwner;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes what dead hosts left under `<runtimeDir>/sandboxes`: each sandbox directory whose owner is no longer
 * alive, after killing its runner if that runner is still alive and is the one recorded (same pid and start
 * time, running the sandbox-runner). Never touches a live host's sandboxes. Never throws: a directory that
 * cannot be removed (safe-remove.ts logs why, with `cleanup_failed`) is skipped and the sweep goes on, so a
 * host always starts whatever an earlier one left.
 */
export async function sweepOrphans(
  runtimeDir: string,
  logger?: Logger,
): Promise<{ dirs: number; runners: number }> {
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
    // Undefined: half-made by a host that died at once (nothing alive can be using it), or not a record at all.
    const owner = readOwner(dir);
    if (owner !== undefined && isAlive(owner.pid, owner.start)) continue;
    if (
      owner?.runnerPid !== undefined &&
      owner.runnerStart !== undefined &&
      owner.runnerStart !== '' &&
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
    if (await removeTree(dir, logger)) dirs++;
  }
  if (dirs > 0) logger?.info({ dirs, runners }, 'removed sandboxes left by dead hosts');
  return { dirs, runners };
}
