// The quotas of a plugin's WASI directory (limits.disk_mb, limits.max_files): what it holds is counted once, by a
// walk when the plugin first needs the count in this process, then kept up to date by every call that changes it.
// The count is the plugin's, not one instance's: kept for its runtime (the WasiFilesystem every instance of it is
// given), so a command, a fresh instance at every call, and a reactor's instance made again after a trap use the
// count already made instead of walking the directory again (issue 10, class 6: 10,000 directories cost a command
// ~3 s of walk at every call). It is also shared by every runtime of this process that has the same directory open
// (one count per directory, keyed by its device, inode and birth time), so two instances cannot each fill the whole
// quota. Who else writes the directory: nobody but the plugin in mode none and in a process or container sandbox
// (the directory is the plugin's alone, docs/SECURITY.md), except the operator, and the plugin's other replicas
// (`[sandbox] replicas`) and an upgrade's second runner, which are other processes: in a runner the quotas' one
// check is then the host's ledger of the directory, which leases them to each process (quota-leases.ts); this
// process's count is what it tells the host when it has made it.
//
// Bytes are the sizes (st_size, the end offset) of the regular files, each inode once however many names it has:
// a sparse file counts as its size, so a seek far past the end and a one-byte write is charged for the whole gap
// (a sparse write past the quota fails), and so are fd_allocate and a truncate that extends; and the directories'
// own sizes, the root's included: ext4 never gives a directory's blocks back, so one filled with long names and
// emptied keeps megabytes the names no longer count (the fourth review, session 19). Entries are names:
// every file, directory, symlink and hard link counts one. An unlinked file still open counts until its last
// descriptor in this process closes. What the walk cannot read (another uid's 0700 directory) is not counted.
import { constants } from 'node:os';
import {
  cPath,
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  lastErrno,
  loadLibc,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
} from '../libc.js';
import { FUEL_PER_BYTE } from './abi.js';
import { LeasePool, type QuotaLeases } from './quota-leases.js';
import { ERRNO, HostErrno, WasiErrno } from './wasi-types.js';

const E = constants.errno;
/**
 * Per directory entry fd_readdir copies out (wasi-stat.ts): its share of getdents64, its parse and its copy into
 * the guest's buffer (2.1-2.6 µs each: 20,000 entries through a 64 KiB buffer took 43-52 ms of CPU). It was 100.
 */
export const FUEL_PER_DIRENT = 49_152;
/**
 * The walk's prices, each what its system calls and their handling cost through koffi (1 µs of host CPU is about
 * 20,000 fuel; measured with the walk alone on ext4, Linux 6.18, Node 22: /tmp scripts in the session's report),
 * charged per entry before the entry is read, so a walk is bounded by the call's fuel and deadline whatever the
 * directory holds. Every entry: its share of getdents64 and of parsing it (10,000 symlinks: 1.56 µs each).
 */
export const FUEL_WALK_ENTRY = 32_768;
/** A regular file (or an entry of unknown type): the statx of its size and identity (3.3-4 µs more than a link). */
export const FUEL_WALK_STAT = 81_920;
/**
 * A directory: entered (openat, statx), listed (getdents64 to its end, and the parent's listing sought again after
 * its subdirectories were entered) and left (openat of `..`, statx, closes): 21-25 µs each, in a chain 2,000 deep,
 * 10,000 side by side, or 100 of 100.
 */
export const FUEL_WALK_DIR = 524_288;
/** A walk resumed in a later call: its position sought and one buffer of the listing read again (8 KiB). */
export const FUEL_WALK_RESUME = 4_194_304;
/**
 * Each byte of a directory's own size a listing scans (the walk, fd_readdir): getdents64 reads every block, empty
 * or not, and an emptied ext4 directory keeps its blocks. 0.127 µs a KB measured (a 3.9 MB directory that held
 * 9,999 names of 255 bytes, emptied: 495 µs a listing), 1.6-3.2 fuel a byte at plain instructions' rate; twice
 * that and more, as fd_readdir lets a call going on from the one before read again, unpaid, what that call's
 * kernel read returned past what it wrote.
 */
export const FUEL_PER_DIR_BYTE = 8;
/**
 * What one new name may make directories take before it can be measured: ext4 adds a block to a full directory,
 * two more when a one-block directory becomes an indexed one, and a new directory has a block of its own. A change
 * that adds a name is refused unless this much is left under disk_mb, then what it did is counted.
 */
export const NAME_HEADROOM = 16 * 1024;
/** Each directory changingNames measures: a statx before the change and one after (1.5-3.5 µs each). */
export const FUEL_PER_MEASURE = 65_536;
const DT_DIR = 4;
const DT_REG = 8;
const DT_UNKNOWN = 0;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const AT_EMPTY_PATH = 0x1000;
const AT_SYMLINK_NOFOLLOW = 0x100;

/** `filesystem`: the file system itself is full (ENOSPC: a tenant's quotas.filesystem_bytes; limit 0). */
export type QuotaKind = 'disk' | 'files' | 'filesystem';

/** What a call the quota refuses reports (WasiIo.quotaExceeded), then answers EDQUOT. */
export interface QuotaIo {
  charge(fuel: number): void;
  exceeded(kind: QuotaKind, limit: number): void;
}

interface Usage {
  bytes: number;
  entries: number;
  /** Whether `bytes` and `entries` are the directory's: its walk is complete. */
  counted: boolean;
  /** The walk while it is not complete: a call that ran out of fuel in it leaves it for the next to go on with. */
  walk: Walk | undefined;
  /** The runtimes holding this count (HOLDS): it is let go with the last. */
  refs: number;
  /**
   * Where the directory is shared with other processes (process and container modes, quota-leases.ts): the lease
   * this process grows from, made when the count is, and the quotas' one check then (the host's ledger).
   */
  pool: LeasePool | undefined;
  /** Open descriptors of regular files and directories, by device:inode. */
  open: Map<string, number>;
  /**
   * Files and directories removed while open, by device:inode: their bytes are given back when the last descriptor
   * closes (the blocks stay until then). A directory's is its size when it was removed (a removed directory's
   * statx says 0); a file's (undefined) is read at that close.
   */
  orphans: Map<string, number | undefined>;
}

/** Every count of this process, by its directory's identity (directoryKey). */
const USAGE = new Map<string, Usage>();

/** A runtime's hold on a count: the directory it counted, and the count. */
interface Hold {
  key: string;
  usage: Usage;
}
/**
 * Each plugin runtime's count, by the WasiFilesystem object its every instance is given (WasmPlugin's options): it
 * outlives the instances, and is let go when the runtime is (LET_GO, or at once when the directory was replaced).
 */
const HOLDS = new WeakMap<object, Hold>();
const LET_GO = new FinalizationRegistry<string>((key) => unref(key));

function unref(key: string): void {
  const usage = USAGE.get(key);
  if (usage === undefined || --usage.refs > 0) return;
  usage.pool?.returnAll();
  usage.pool = undefined;
  usage.walk?.close();
  usage.walk = undefined; // a DirQuota still holding `usage` starts a new walk, not one whose descriptor is closed
  USAGE.delete(key);
}

/**
 * A runtime that is done with its directory (its plugin deactivated): its hold on the count goes now rather than
 * when the garbage collector gets to the runtime, so a count no runtime uses is not kept, with a walk's descriptors,
 * until then. A runtime used after this counts again on its next need. Idempotent.
 */
export function releaseQuota(owner: object): void {
  const hold = HOLDS.get(owner);
  if (hold === undefined) return;
  HOLDS.delete(owner);
  LET_GO.unregister(hold);
  unref(hold.key);
}

/** Test seam: how many directories' counts this process keeps (test/security/wasi-fuel.test.ts). */
export function heldQuotaCounts(): number {
  return USAGE.size;
}

/** A statx of a descriptor or of a name in it, no symlink followed. */
export interface Statx {
  mode: number;
  nlink: number;
  size: number;
  key: string;
}

const statBuf = Buffer.alloc(256);
const STATX_BTIME = 0x800;

/**
 * A directory's identity for its count: device, inode and birth time (where the file system keeps one), so that a
 * directory made again in place of the counted one, even on a reused inode number, is counted again.
 */
function directoryKey(fd: number): string {
  const rc = loadLibc().statx(fd, cPath(''), AT_EMPTY_PATH, 0x7ff | STATX_BTIME, statBuf) as number;
  if (rc !== 0) throw new HostErrno(lastErrno());
  const born = (statBuf.readUInt32LE(0) & STATX_BTIME) !== 0 ? statBuf.readBigInt64LE(80) : 0n;
  const nsec = (statBuf.readUInt32LE(0) & STATX_BTIME) !== 0 ? statBuf.readUInt32LE(88) : 0;
  return `${statBuf.readUInt32LE(136)}:${statBuf.readUInt32LE(140)}:${statBuf.readBigUInt64LE(32)}:${born}.${nsec}`;
}

export function statxOf(dirfd: number, name: Uint8Array | undefined, follow = false): Statx | undefined {
  const flags = name === undefined ? AT_EMPTY_PATH : follow ? 0 : AT_SYMLINK_NOFOLLOW;
  const rc = loadLibc().statx(dirfd, cPath(name ?? ''), flags, 0x7ff, statBuf) as number;
  if (rc !== 0) return undefined;
  return {
    mode: statBuf.readUInt16LE(28),
    nlink: statBuf.readUInt32LE(16),
    size: Number(statBuf.readBigUInt64LE(40)),
    key: `${statBuf.readUInt32LE(136)}:${statBuf.readUInt32LE(140)}:${statBuf.readBigUInt64LE(32)}`,
  };
}

export const isRegular = (s: Statx) => (s.mode & S_IFMT) === S_IFREG;
export const isDirectory = (s: Statx) => (s.mode & S_IFMT) === S_IFDIR;

/**
 * One instance's view of its directory's quota; the count itself is its plugin runtime's (HOLDS), kept across
 * instances, and shared by every runtime of the process on that directory (USAGE).
 */
export class DirQuota {
  #usage: Usage | undefined;

  /** `owner`: what every instance of the plugin's runtime shares (its WasiFilesystem), which holds the count. */
  constructor(
    private readonly owner: object,
    private readonly rootFd: () => number,
    private readonly diskBytes: number,
    private readonly maxFiles: number,
    private readonly io: QuotaIo,
    /** The host's ledger of the directory, where other processes write it too; absent in mode none. */
    private readonly leases?: QuotaLeases,
  ) {}

  get active(): boolean {
    return this.diskBytes > 0 || this.maxFiles > 0;
  }

  /**
   * Whether other processes may write the directory too (a runner, under the host's ledger): a regular file's bytes
   * then go back to the ledger only when no process has it open, which each tells the others by a shared flock(2) on
   * every descriptor of a regular file it opens. (A process sees only its own descriptors: the seventh review had
   * one replica keep files open that another removed, 900 KB each, and the remover gave their bytes back while they
   * stayed on disk: 4.5 MB held under a quota of 1 MiB, 1,024 descriptors an instance.) WASI has no flock: the plugin
   * can take no lock of its own.
   */
  get #shared(): boolean {
    return this.leases !== undefined && this.diskBytes > 0;
  }

  /**
   * Around the removal of the name `name` in `dirfd` (`stat`: what it names, before): whether another process holds
   * the file open (then its bytes stay counted: that process's last close gives them back). Only where the
   * directory is shared, for a regular file's last name that this process does not hold open itself; the check
   * holds an exclusive lock through the removal, so no process opens the file between the check and the removal
   * (an open's shared lock waits for it).
   */
  removing<T>(
    dirfd: number,
    name: Uint8Array,
    stat: Statx | undefined,
    remove: () => T,
  ): { result: T; elsewhere: boolean } {
    if (
      stat === undefined ||
      !this.#shared ||
      !isRegular(stat) ||
      stat.nlink !== 1 ||
      this.#usage?.open.has(stat.key)
    )
      return { result: remove(), elsewhere: false };
    const libc = loadLibc();
    const fd = libc.openat(dirfd, cPath(name), O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0) as number;
    if (fd < 0) return { result: remove(), elsewhere: false };
    try {
      const same = statxOf(fd, undefined)?.key === stat.key;
      const elsewhere = same && (libc.flock(fd, LOCK_EX | LOCK_NB) as number) !== 0;
      return { result: remove(), elsewhere };
    } finally {
      libc.close(fd);
    }
  }

  /** Before any change to the directory: the count is made first (a change cannot race a walk left unfinished). */
  ready(): void {
    if (this.active) this.#get();
  }

  /** The count, made on its runtime's first need in this process (the walk is charged to this call's fuel). */
  #get(): Usage {
    let usage = this.#usage;
    if (usage === undefined) {
      const key = directoryKey(this.rootFd());
      let hold = HOLDS.get(this.owner);
      if (hold === undefined || hold.key !== key) {
        if (hold !== undefined) {
          // The directory is another one now (replaced under the runtime): its count is let go.
          LET_GO.unregister(hold);
          unref(hold.key);
        }
        const held = USAGE.get(key) ?? {
          bytes: 0,
          entries: 0,
          counted: false,
          walk: undefined,
          refs: 0,
          pool: undefined,
          open: new Map(),
          orphans: new Map(),
        };
        held.refs++;
        USAGE.set(key, held);
        hold = { key, usage: held };
        HOLDS.set(this.owner, hold);
        LET_GO.register(this.owner, key, hold);
      }
      usage = hold.usage;
      this.#usage = usage;
    }
    if (!usage.counted) this.#count(usage);
    return usage;
  }

  /**
   * Walks the directory (or goes on with the walk a call before this one left when its fuel ran out: every entry
   * counted is paid for once, so a directory larger than one call's fuel is counted over several calls, each
   * answering fuel_exhausted until the count is complete). A failure of the walk itself drops it: the next call
   * that needs the count starts again.
   */
  #count(usage: Usage): void {
    // The root's listing, or a resumed one's (read again from where it stopped, empty blocks too), by its size.
    const listed = usage.walk?.listingBytes() ?? statxOf(this.rootFd(), undefined)?.size ?? 0;
    const resume = usage.walk === undefined ? 0 : FUEL_WALK_RESUME;
    this.io.charge(FUEL_WALK_DIR + resume + listed * FUEL_PER_DIR_BYTE);
    let walk = usage.walk;
    try {
      walk ??= usage.walk = new Walk(this.rootFd());
      walk.run(this.io);
    } catch (error) {
      if (walk !== undefined && (error instanceof HostErrno || error instanceof WasiErrno)) {
        walk.close();
        usage.walk = undefined;
      }
      throw error;
    }
    walk.close();
    usage.walk = undefined;
    usage.bytes = walk.bytes;
    usage.entries = walk.entries;
    usage.counted = true;
    if (this.leases !== undefined) usage.pool = new LeasePool(this.leases, [walk.bytes, walk.entries]);
  }

  /** The quotas as the host's ledger is asked for them (bytes, entries). */
  get #limits(): [number, number] {
    return [this.diskBytes, this.maxFiles];
  }

  /** Before a file grows by `bytes`: refused with EDQUOT past limits.disk_mb. */
  grow(bytes: number): void {
    if (this.diskBytes === 0 || bytes <= 0) return;
    const usage = this.#get();
    if (usage.pool !== undefined) usage.pool.take(bytes, 0, this.io, this.#limits);
    else if (usage.bytes + bytes > this.diskBytes) {
      this.io.exceeded('disk', this.diskBytes);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    usage.bytes += bytes;
  }

  /**
   * Around a change to the names in the directories `dirs` (host descriptors): what the change made them take
   * themselves (their st_size) is counted in bytes, up or down (tmpfs gives a directory's bytes back, ext4 does
   * not). A change that `adds` a name is refused first, with EDQUOT, unless NAME_HEADROOM is left under disk_mb.
   */
  changingNames<T>(dirs: readonly number[], adds: boolean, change: () => T): T {
    if (this.diskBytes === 0) return change();
    this.io.charge(dirs.length * FUEL_PER_MEASURE);
    const usage = this.#get();
    if (adds && usage.pool !== undefined) usage.pool.reserve(NAME_HEADROOM, this.io, this.#limits);
    else if (adds && usage.bytes + NAME_HEADROOM > this.diskBytes) {
      this.io.exceeded('disk', this.diskBytes);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    const before = new Map<string, { fd: number; size: number }>();
    for (const fd of dirs) {
      const stat = statxOf(fd, undefined);
      if (stat !== undefined && !before.has(stat.key)) before.set(stat.key, { fd, size: stat.size });
    }
    try {
      return change();
    } finally {
      for (const { fd, size } of before.values()) {
        const now = statxOf(fd, undefined)?.size ?? size;
        usage.bytes = Math.max(0, usage.bytes + now - size);
        usage.pool?.took(now - size);
      }
    }
  }

  /** A directory made (its own size): counted without a refusal, the headroom was (changingNames). */
  madeDirectory(size: number): void {
    if (this.diskBytes === 0) return;
    const usage = this.#get();
    usage.bytes += size;
    usage.pool?.took(size);
  }

  /** A file shrank (or grew less than reserved): gives `bytes` back. */
  shrink(bytes: number): void {
    if (this.diskBytes === 0 || bytes <= 0) return;
    const usage = this.#get();
    usage.bytes = Math.max(0, usage.bytes - bytes);
    usage.pool?.give(bytes, 0);
  }

  /** Before a name is created: refused with EDQUOT past limits.max_files. */
  addEntry(): void {
    if (this.maxFiles === 0) return;
    const usage = this.#get();
    if (usage.pool !== undefined) usage.pool.take(0, 1, this.io, this.#limits);
    else if (usage.entries + 1 > this.maxFiles) {
      this.io.exceeded('files', this.maxFiles);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    usage.entries++;
  }

  removeEntry(): void {
    if (this.maxFiles === 0) return;
    const usage = this.#get();
    usage.entries = Math.max(0, usage.entries - 1);
    usage.pool?.give(0, 1);
  }

  /**
   * A name that was `stat` (before it went) no longer exists: its entry, and its bytes if it was the last name (a
   * directory's own size: it had one).
   */
  removed(stat: Statx, elsewhere = false): void {
    if (!this.active) return;
    this.removeEntry();
    const directory = isDirectory(stat);
    if (!(directory || (isRegular(stat) && stat.nlink === 1)) || this.diskBytes === 0) return;
    const usage = this.#get();
    // Still open here: ext4 frees the blocks at the last close (a directory held open keeps megabytes of them).
    if ((usage.open.get(stat.key) ?? 0) > 0) usage.orphans.set(stat.key, directory ? stat.size : undefined);
    // Open in another process (removing): its last close gives the bytes back.
    else if (!elsewhere) this.shrink(stat.size);
  }

  /** A descriptor `fd` of the regular file or directory `key` was opened. */
  opened(key: string, fd: number, regular: boolean): void {
    if (this.diskBytes === 0) return;
    const usage = this.#get();
    usage.open.set(key, (usage.open.get(key) ?? 0) + 1);
    // Shared: every open of a regular file says so (#shared); waits only for a removal's check (removing).
    if (regular && this.#shared) loadLibc().flock(fd, LOCK_SH);
  }

  /** Before a descriptor of the regular file or directory `key` closes (`fd` still open). */
  closing(key: string, fd: number): void {
    const usage = this.#usage;
    if (usage === undefined || this.diskBytes === 0) return;
    const left = (usage.open.get(key) ?? 1) - 1;
    if (left > 0) {
      usage.open.set(key, left);
      return;
    }
    usage.open.delete(key);
    const orphan = usage.orphans.has(key);
    const size = usage.orphans.get(key);
    usage.orphans.delete(key);
    if (orphan && size !== undefined) {
      this.shrink(size); // a directory's
      return;
    }
    // Shared, a regular file removed (by this process or another): given back by the last process to close it,
    // which is the one that can lock it alone (a lost race leaves the bytes counted: the next count drops them).
    if (!orphan && !this.#shared) return;
    const stat = statxOf(fd, undefined);
    if (stat === undefined || stat.nlink !== 0 || !isRegular(stat)) return;
    if (!this.#shared || (loadLibc().flock(fd, LOCK_EX | LOCK_NB) as number) === 0) this.shrink(stat.size);
  }

  /** This instance is gone (its descriptors closed): the count stays with its runtime for the next instance. */
  release(): void {
    this.#usage = undefined;
  }
}

/** A directory on the walk's way down. */
interface Level {
  /** Its device:inode, checked when coming back up to it through `..`. */
  id: string;
  /** Its own size (st_size): counted in bytes; what a walk resumed in its listing pays for (DirQuota.#count). */
  size: number;
  /** Where its listing goes on: the position after the last entry counted. */
  readPos: bigint;
  /** Whether every entry of it is counted. */
  listed: boolean;
  /** Subdirectories counted and not entered yet: those of one buffer of the listing (at most 8 KiB of names). */
  pending: Buffer[];
  /** The next of `pending` to enter. */
  next: number;
}

const OPEN_DIR = O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
/** The listing's buffer: what a level keeps of names to enter, and what a resumed walk may read again. */
const listBuf = Buffer.allocUnsafe(8 * 1024);

/**
 * Counts the bytes (regular files' and directories' own, the root's included) and entries under a directory without
 * following any symlink: one descriptor open at a time whatever the depth (coming back up goes through `..`,
 * checked against the identity recorded on the way down).
 * A directory's listing is read one buffer at a time, every entry of the buffer counted, then the subdirectories
 * found in it are entered, by name, before the next buffer is read from the position reached: the listing is read
 * once, not again from each subdirectory's entry (which made a directory of n subdirectories cost n buffers of its
 * listing), and each level keeps at most one buffer's names. Every entry is charged its price (FUEL_WALK_*, and a
 * directory's size by the byte) through `io.charge`, once and before it is read, so the walk is bounded by the
 * call's fuel and deadline, and one that a charge stops is left where it was: `run` again goes on from there. The
 * root's listing, and a resumed one, are the caller's to pay (DirQuota.#count). A mount inside is not entered.
 */
export class Walk {
  bytes = 0;
  entries = 0;
  #cur: number;
  readonly #device: string;
  readonly #stack: Level[];
  readonly #seen = new Set<string>();

  constructor(root: number) {
    const libc = loadLibc();
    this.#cur = libc.openat(root, cPath('.'), OPEN_DIR, 0) as number;
    if (this.#cur < 0) throw new HostErrno(lastErrno());
    const top = statxOf(this.#cur, undefined);
    const rootId = top?.key ?? '';
    this.#device = rootId.slice(0, rootId.lastIndexOf(':'));
    this.#stack = [{ id: rootId, size: top?.size ?? 0, readPos: 0n, listed: false, pending: [], next: 0 }];
    this.bytes = top?.size ?? 0;
  }

  /** Goes on until the count is complete. Throws what `io.charge` throws (run again to go on) or the walk's failure. */
  run(io: Pick<QuotaIo, 'charge'>): { bytes: number; entries: number } {
    for (;;) {
      const top = this.#stack[this.#stack.length - 1] as Level;
      if (top.next < top.pending.length) this.#enter(top.pending[top.next++] as Buffer);
      else if (!top.listed) this.#list(top, io);
      else if (this.#stack.length > 1) this.#leave();
      else return { bytes: this.bytes, entries: this.entries };
    }
  }

  /** The own size of the directory whose listing the walk is in (what going on with it may read again). */
  listingBytes(): number {
    return (this.#stack[this.#stack.length - 1] as Level).size;
  }

  close(): void {
    if (this.#cur >= 0) loadLibc().close(this.#cur);
    this.#cur = -1;
  }

  /** Counts the current directory's entries from `top.readPos`, until a buffer held subdirectories or it ended. */
  #list(top: Level, io: Pick<QuotaIo, 'charge'>): void {
    const libc = loadLibc();
    const cur = this.#cur;
    top.pending = [];
    top.next = 0;
    if (BigInt(libc.lseek(cur, top.readPos, 0) as number | bigint) < 0n) throw new HostErrno(lastErrno());
    while (top.pending.length === 0) {
      const n = libc.getdents64(cur, listBuf, listBuf.length) as number;
      if (n < 0) throw new HostErrno(lastErrno());
      if (n === 0) {
        top.listed = true;
        return;
      }
      for (let at = 0; at < n; ) {
        const reclen = listBuf.readUInt16LE(at + 16);
        const after = listBuf.readBigInt64LE(at + 8);
        let type = listBuf[at + 18] ?? DT_UNKNOWN;
        const nameEnd = listBuf.indexOf(0, at + 19);
        const name = listBuf.subarray(at + 19, nameEnd < 0 || nameEnd > at + reclen ? at + reclen : nameEnd);
        at += reclen;
        if (isDots(name)) {
          top.readPos = after;
          continue;
        }
        // A directory's price includes its size (its listing reads every block, empty or not: FUEL_PER_DIR_BYTE),
        // so a directory (or what may be one) is asked for it first: one statx before the charge.
        let stat = type === DT_DIR || type === DT_UNKNOWN ? statxOf(cur, name) : undefined;
        const price =
          FUEL_WALK_ENTRY +
          name.length * FUEL_PER_BYTE +
          (type === DT_DIR ? FUEL_WALK_DIR : 0) +
          (type === DT_REG ? FUEL_WALK_STAT : 0) +
          (type === DT_UNKNOWN ? FUEL_WALK_STAT + FUEL_WALK_DIR : 0) +
          (stat !== undefined && isDirectory(stat) ? stat.size * FUEL_PER_DIR_BYTE : 0);
        io.charge(price); // a throw here leaves readPos before this entry: counted by the next run
        top.readPos = after;
        this.entries++;
        if (type === DT_REG) stat = statxOf(cur, name);
        if (type === DT_UNKNOWN || type === DT_REG) {
          if (stat === undefined) continue;
          type = isDirectory(stat) ? DT_DIR : isRegular(stat) ? DT_REG : 0;
        }
        if (type === DT_REG && stat !== undefined) {
          if (stat.nlink > 1) {
            if (this.#seen.has(stat.key)) continue;
            this.#seen.add(stat.key);
          }
          this.bytes += stat.size;
        } else if (type === DT_DIR) {
          top.pending.push(Buffer.from(name));
        }
      }
    }
  }

  /** Enters the subdirectory `name` of the current one (gone, swapped or unreadable: not counted). */
  #enter(name: Buffer): void {
    const libc = loadLibc();
    const child = libc.openat(this.#cur, cPath(name), OPEN_DIR, 0) as number;
    if (child < 0) return;
    const stat = statxOf(child, undefined);
    const childId = stat?.key ?? '';
    if (childId.slice(0, childId.lastIndexOf(':')) !== this.#device) {
      libc.close(child); // a mount inside
      return;
    }
    const size = stat?.size ?? 0;
    this.bytes += size;
    this.#stack.push({ id: childId, size, readPos: 0n, listed: false, pending: [], next: 0 });
    libc.close(this.#cur);
    this.#cur = child;
  }

  /** Back up to the directory below, through `..`, which must still be the one the walk came down from. */
  #leave(): void {
    const libc = loadLibc();
    this.#stack.pop();
    const below = this.#stack[this.#stack.length - 1] as Level;
    const parent = libc.openat(this.#cur, cPath('..'), OPEN_DIR, 0) as number;
    if (parent < 0) throw new HostErrno(lastErrno());
    if (statxOf(parent, undefined)?.key !== below.id) {
      libc.close(parent);
      throw new HostErrno(E.EAGAIN); // moved while counted: the next call counts again
    }
    libc.close(this.#cur);
    this.#cur = parent;
  }
}

function isDots(name: Uint8Array): boolean {
  return (
    (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  );
}

/**
 * One whole walk of `root` (src/server/tenant-disk.ts measures tenants with it): `io.charge` is called once per
 * entry, before it is read, so a caller can count and cap entries with it.
 */
export function walk(root: number, io: QuotaIo): { bytes: number; entries: number } {
  const counting = new Walk(root);
  try {
    return counting.run(io);
  } finally {
    counting.close();
  }
}
