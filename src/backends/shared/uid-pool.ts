import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import koffi, { type LibraryHandle } from 'koffi';
import { ReedError } from '../../errors.js';

/** A range of uids (inclusive) process-mode runners run as, one uid per running sandbox. */
export interface UidRange {
  start: number;
  end: number;
}

/**
 * The default range: far above system users (< 1000), regular users, 65534 (nobody, the container user) and the
 * subordinate ranges useradd and Docker's userns-remap hand out (100000-165535 and the next 65536 blocks).
 */
export const DEFAULT_RUNNER_UIDS: Readonly<UidRange> = Object.freeze({ start: 600_000, end: 699_999 });

/** Uids no runner may ever have: root, and nobody (which containers and other software share). */
export const RESERVED_UIDS: readonly number[] = [0, 65_534];

/** `"START-END"` as a range, or undefined when it is not one; `problem` says what is wrong with a range. */
export function parseUidRange(text: string): UidRange | undefined {
  const m = /^(\d{1,10})-(\d{1,10})$/.exec(text.trim());
  return m === null ? undefined : { start: Number(m[1]), end: Number(m[2]) };
}

export function uidRangeProblem(
  range: UidRange,
  avoid: readonly number[] = RESERVED_UIDS,
): string | undefined {
  if (range.start > range.end) return `starts after it ends (${range.start} > ${range.end})`;
  if (range.end > 2 ** 32 - 2) return `ends above the largest uid (${2 ** 32 - 2})`;
  const inside = avoid.find((uid) => uid >= range.start && uid <= range.end);
  if (inside !== undefined)
    return `contains uid ${inside}, which runners must never share (root, or nobody: the user containers run as)`;
  return undefined;
}

/** One uid, held for as long as its sandbox runs. */
export interface UidLease {
  readonly uid: number;
  /** Gives the uid back. Call it only once nothing runs as it any more. Idempotent. */
  release(): void;
}

/**
 * Where leases are kept: a directory only root may enter (hosts that lease uids run as root), holding one file
 * whose bytes stand for uids. Fixed, so that every host process on the machine finds it.
 */
export const LEASE_DIR = '/run/reed-runner-uids';
const LEASE_FILE = `${LEASE_DIR}/leases`;

/**
 * Leases a uid of `range` that no other sandbox holds, in this host or in any other host process on the machine.
 * A lease is an open-file-description lock (fcntl F_OFD_SETLK) on the byte at offset `uid` of LEASE_FILE:
 * taking it is atomic (another holder's lock refuses it, so two hosts can never both win), and the kernel drops
 * it when the holder dies however it dies, so a crashed host leaks nothing. The whole process holds one
 * descriptor, close-on-exec, whatever the number of leases, and nothing is reachable from a sandbox: the
 * directory is root's alone, and there is no socket. (Leases used to be abstract sockets "reed-runner-uid-<uid>"
 * this process listened on: a plugin granted network shares the host's network namespace, and it connected
 * ~20,000 times to its own lease, each connection a descriptor of the host's, until the host had none left; it
 * could also bind the names of free uids first and so deny them. Those names now mean nothing.) A number some live
 * process already has as its uid or gid (a runner or a container a dead host left, anything else) is skipped too:
 * /proc is scanned now, or was scanned for the range's spare (`verifyUidAhead`) at most SPARE_MAX_AGE_MS ago,
 * which this lease then takes. Throws `sandbox_unavailable` when every uid of the range is taken, or when the lease
 * file cannot be used.
 */
export async function leaseUid(range: UidRange, pluginId: string): Promise<UidLease> {
  const locks = leaseLocks(pluginId);
  const key = rangeKey(range);
  const spare = spares.get(key);
  if (spare !== undefined) {
    spares.delete(key);
    clearTimeout(spare.expiry);
    // Locked since its scan, and scanned at most SPARE_MAX_AGE_MS ago: as verified as a uid scanned now.
    return held(locks, spare.uid);
  }
  const uid = findFree(range, locks);
  if (uid !== undefined) return held(locks, uid);
  const size = range.end - range.start + 1;
  throw new ReedError(
    'sandbox_unavailable',
    `no free runner uid for plugin "${pluginId}": all ${size} uids of [sandbox] runner_uids (${range.start}-${range.end}) are taken; widen the range in reed.toml`,
    { pluginId, field: 'sandbox.runner_uids' },
  );
}

/**
 * How long a uid verified ahead (`verifyUidAhead`) stays this process's spare before it is given back. The scan is
 * a snapshot either way (a root process may take any uid after it); what this bounds is how long the snapshot is
 * old when the uid is leased, and how long a uid stays locked without a sandbox.
 */
export const SPARE_MAX_AGE_MS = 1_000;

/** At most one uid per range, locked and found free by a scan, waiting for the next lease of that range. */
const spares = new Map<string, { uid: number; expiry: NodeJS.Timeout }>();
const rangeKey = (range: UidRange) => `${range.start}-${range.end}`;

/**
 * Does a lease's work ahead of it, off the start's path: locks a uid of `range` that no other sandbox holds and
 * that no live process has as an id (the same lock and the same scan of /proc as `leaseUid`), and keeps it for the
 * next `leaseUid` of that range within SPARE_MAX_AGE_MS, after which the lock is given back. Meant for when the host
 * waits anyway (a runner booting Node for ~40 ms): the scan is linear in the machine's processes (~3 ms for a
 * hundred, mostly root's), and a lease that finds a spare only takes it. The cross-host guarantee is the lock's,
 * held from before the scan until the sandbox ends, as for any lease. Does nothing when a spare is kept already,
 * when every uid is taken, or when the lease file cannot be used (the lease that follows reports that).
 */
export function verifyUidAhead(range: UidRange, pluginId: string): void {
  const key = rangeKey(range);
  if (spares.has(key)) return;
  let locks: LeaseLocks;
  let uid: number | undefined;
  // Never throws: it runs from a timer of the host's, where a throw would end the host (the lease that follows
  // meets the same error and reports it).
  try {
    locks = leaseLocks(pluginId);
    uid = findFree(range, locks);
  } catch {
    return;
  }
  if (uid === undefined) return;
  const expiry = setTimeout(() => {
    if (spares.get(key)?.uid !== uid) return;
    spares.delete(key);
    locks.give(uid);
  }, SPARE_MAX_AGE_MS);
  expiry.unref();
  spares.set(key, { uid, expiry });
}

function held(locks: LeaseLocks, uid: number): UidLease {
  let holding = true;
  return {
    uid,
    release: () => {
      if (holding) locks.give(uid);
      holding = false;
    },
  };
}

/**
 * Locks and returns a uid of `range` that no other holder has and no live process uses, or undefined. The search
 * starts at a random place so that hosts starting together rarely contend; /proc is scanned once, after the first
 * lock taken (a process that starts as a uid after its lock is taken is one a holder of the lock started).
 */
function findFree(range: UidRange, locks: LeaseLocks): number | undefined {
  const size = range.end - range.start + 1;
  const first = Math.floor(Math.random() * size);
  let busy: Set<number> | undefined;
  for (let i = 0; i < size; i++) {
    const uid = range.start + ((first + i) % size);
    if (RESERVED_UIDS.includes(uid) || busy?.has(uid)) continue;
    if (!locks.take(uid)) continue;
    try {
      busy ??= uidsInUse();
    } catch (error) {
      locks.give(uid);
      throw error;
    }
    if (busy.has(uid)) {
      locks.give(uid);
      continue;
    }
    return uid;
  }
  return undefined;
}

/** Byte locks on LEASE_FILE through one descriptor of this process. */
interface LeaseLocks {
  /** Locks `uid`'s byte; false when another process, or this one, holds it. */
  take(uid: number): boolean;
  give(uid: number): void;
}

const F_OFD_SETLK = 37;
const F_WRLCK = 1;
const F_UNLCK = 2;
let locks: LeaseLocks | undefined;

function leaseLocks(pluginId: string): LeaseLocks {
  if (locks !== undefined) return locks;
  const unavailable = (why: string, cause?: unknown) =>
    new ReedError(
      'sandbox_unavailable',
      `cannot lease a runner uid for plugin "${pluginId}": ${why}; the host must run as root on a machine where it can create ${LEASE_DIR}`,
      { pluginId, ...(cause === undefined ? {} : { cause }) },
    );
  let fd: number;
  try {
    mkdirSync(LEASE_DIR, { recursive: true, mode: 0o700 });
    // Only root may have made it, or may write in it: anything else could hold or drop every lease.
    const dir = lstatSync(LEASE_DIR);
    if (!dir.isDirectory() || dir.uid !== 0 || (dir.mode & 0o077) !== 0)
      throw unavailable(`${LEASE_DIR} is not a directory of root's with mode 0700`);
    // libuv opens close-on-exec: the descriptor never reaches a runner.
    fd = openSync(LEASE_FILE, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    if (fstatSync(fd).uid !== 0) {
      closeSync(fd);
      throw unavailable(`${LEASE_FILE} is not root's`);
    }
  } catch (error) {
    throw error instanceof ReedError
      ? error
      : unavailable(`${LEASE_FILE}: ${(error as Error).message}`, error);
  }
  const fcntl = libc().func('int fcntl(int fd, int cmd, ...)');
  // struct flock on 64-bit Linux: short l_type, short l_whence, (pad), off_t l_start, off_t l_len, pid_t l_pid
  // (0 for OFD locks), (pad); little-endian on the x86-64 and arm64 hosts this runs on.
  const lock = (type: number, uid: number): boolean => {
    const flock = Buffer.alloc(32);
    flock.writeInt16LE(type, 0);
    flock.writeBigInt64LE(BigInt(uid), 8);
    flock.writeBigInt64LE(1n, 16);
    return (fcntl(fd, F_OFD_SETLK, 'uint8_t *', flock) as number) === 0;
  };
  // Locks of one open file description do not conflict with each other: this process's own leases are kept here.
  const mine = new Set<number>();
  locks = {
    take: (uid) => {
      if (mine.has(uid) || !lock(F_WRLCK, uid)) return false;
      mine.add(uid);
      return true;
    },
    give: (uid) => {
      if (mine.delete(uid)) lock(F_UNLCK, uid);
    },
  };
  return locks;
}

let handle: LibraryHandle | undefined;
function libc(): LibraryHandle {
  handle ??= koffi.load('libc.so.6');
  return handle;
}

/**
 * Real, effective, saved and filesystem uids and gids of every live process: a leased number is a runner's uid or a
 * data directory's group, and a container a dead host left (runc) still runs as 65534:<its directory's gid>.
 */
function uidsInUse(): Set<number> {
  const out = new Set<number>();
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) > 57) continue; // not a pid
    // /proc/PID belongs to the process's effective uid and gid. A process that is neither root's nor in root's
    // group has all its ids equal to those unless it ran a set-id program, which no sandbox can (no-new-privileges:
    // bubblewrap's seccomp, containers' security option): its stat is enough, and cheaper than its status,
    // which the kernel composes field by field (with a thousand runners, three thousand processes are read
    // at every lease). Root's, and a process that made itself non-dumpable (shown as root's), are read in full.
    let owner: ReturnType<typeof statSync>;
    try {
      owner = statSync(`/proc/${name}`);
    } catch {
      continue; // gone meanwhile
    }
    if (owner.uid !== 0 && owner.gid !== 0) {
      out.add(owner.uid);
      out.add(owner.gid);
      continue;
    }
    try {
      const status = readStatus(`/proc/${name}/status`);
      for (const key of ['\nUid:', '\nGid:']) {
        const at = status.indexOf(key);
        if (at < 0) continue;
        const end = status.indexOf('\n', at + 1);
        for (const id of status
          .slice(at + key.length, end < 0 ? undefined : end)
          .trim()
          .split(/\s+/))
          out.add(Number(id));
      }
    } catch {}
  }
  return out;
}

const statusBuffer = Buffer.alloc(4096);

/**
 * A process's status: its first read of up to 4 KiB (the kernel composes the file whole and hands it out from its
 * start; the Uid and Gid lines are its 8th and 9th), or the whole file when that read did not end past the Gid line.
 * One open, read and close into a buffer kept for it: readFileSync's fstat, growing reads and fresh buffers cost a
 * lease 7.4 and 4.8 ms of CPU against 2.7 and 2.3 ms this way, scanning a hundred root processes (10 scans each).
 */
function readStatus(path: string): string {
  const fd = openSync(path, 'r');
  let text: string;
  try {
    text = statusBuffer.toString('latin1', 0, readSync(fd, statusBuffer, 0, statusBuffer.length, null));
  } finally {
    closeSync(fd);
  }
  const gid = text.indexOf('\nGid:');
  return gid >= 0 && text.indexOf('\n', gid + 1) >= 0 ? text : readFileSync(path, 'latin1');
}
