// The quotas of a plugin's WASI directory (limits.disk_mb, limits.max_files): what it holds is counted once, by a
// walk when the first instance of this process needs the count, then kept up to date by every call that changes
// it, for every instance of this process that has the same directory open (one count per directory, keyed by its
// device and inode), so two instances cannot each fill the whole quota.
//
// Bytes are the sizes (st_size, the end offset) of the regular files, each inode once however many names it has:
// a sparse file counts as its size, so a seek far past the end and a one-byte write is charged for the whole gap
// (a sparse write past the quota fails), and so are fd_allocate and a truncate that extends. Entries are names:
// every file, directory, symlink and hard link counts one. An unlinked file still open counts until its last
// descriptor in this process closes. What the walk cannot read (another uid's 0700 directory) is not counted.
import { constants } from 'node:os';
import { cPath, lastErrno, loadLibc, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW } from '../libc.js';
import { FUEL_PER_BYTE } from './abi.js';
import { ERRNO, HostErrno, WasiErrno } from './wasi-types.js';

const E = constants.errno;
/** Fuel per directory entry the walk reads (a statx or an open each): about what a small import costs. */
export const FUEL_PER_DIRENT = 100;
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
  refs: number;
  /** Open descriptors of regular files, by device:inode. */
  open: Map<string, number>;
  /** Files unlinked while open: their bytes are given back when the last descriptor closes. */
  orphans: Set<string>;
}

const USAGE = new Map<string, Usage>();

/** A statx of a descriptor or of a name in it, no symlink followed. */
export interface Statx {
  mode: number;
  nlink: number;
  size: number;
  key: string;
}

const statBuf = Buffer.alloc(256);

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

/** One instance's view of its directory's quota; the count itself is shared (USAGE). */
export class DirQuota {
  #usage: Usage | undefined;
  #key: string | undefined;

  constructor(
    private readonly rootFd: () => number,
    private readonly diskBytes: number,
    private readonly maxFiles: number,
    private readonly io: QuotaIo,
  ) {}

  get active(): boolean {
    return this.diskBytes > 0 || this.maxFiles > 0;
  }

  /** The shared count, walked for on first use in this process (the walk is charged to this call's fuel). */
  #get(): Usage {
    if (this.#usage !== undefined) return this.#usage;
    const root = this.rootFd();
    const id = statxOf(root, undefined);
    if (id === undefined) throw new HostErrno(lastErrno());
    let usage = USAGE.get(id.key);
    if (usage === undefined) {
      usage = { ...walk(root, this.io), refs: 0, open: new Map(), orphans: new Set() };
      USAGE.set(id.key, usage);
    }
    usage.refs++;
    this.#usage = usage;
    this.#key = id.key;
    return usage;
  }

  /** Before a file grows by `bytes`: refused with EDQUOT past limits.disk_mb. */
  grow(bytes: number): void {
    if (this.diskBytes === 0 || bytes <= 0) return;
    const usage = this.#get();
    if (usage.bytes + bytes > this.diskBytes) {
      this.io.exceeded('disk', this.diskBytes);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    usage.bytes += bytes;
  }

  /** A file shrank (or grew less than reserved): gives `bytes` back. */
  shrink(bytes: number): void {
    if (this.diskBytes === 0 || bytes <= 0) return;
    const usage = this.#get();
    usage.bytes = Math.max(0, usage.bytes - bytes);
  }

  /** Before a name is created: refused with EDQUOT past limits.max_files. */
  addEntry(): void {
    if (this.maxFiles === 0) return;
    const usage = this.#get();
    if (usage.entries + 1 > this.maxFiles) {
      this.io.exceeded('files', this.maxFiles);
      throw new WasiErrno(ERRNO.DQUOT);
    }
    usage.entries++;
  }

  removeEntry(): void {
    if (this.maxFiles === 0) return;
    const usage = this.#get();
    usage.entries = Math.max(0, usage.entries - 1);
  }

  /** A name that was `stat` (before it went) no longer exists: its entry, and its bytes if it was the last name. */
  removed(stat: Statx): void {
    if (!this.active) return;
    this.removeEntry();
    if (!isRegular(stat) || stat.nlink > 1 || this.diskBytes === 0) return;
    const usage = this.#get();
    if ((usage.open.get(stat.key) ?? 0) > 0) usage.orphans.add(stat.key);
    else this.shrink(stat.size);
  }

  /** A descriptor of the regular file `key` was opened. */
  opened(key: string): void {
    if (this.diskBytes === 0) return;
    const usage = this.#get();
    usage.open.set(key, (usage.open.get(key) ?? 0) + 1);
  }

  /** Before a descriptor of the regular file `key` closes (`fd` still open). */
  closing(key: string, fd: number): void {
    const usage = this.#usage;
    if (usage === undefined || this.diskBytes === 0) return;
    const left = (usage.open.get(key) ?? 1) - 1;
    if (left > 0) {
      usage.open.set(key, left);
      return;
    }
    usage.open.delete(key);
    if (!usage.orphans.delete(key)) return;
    const stat = statxOf(fd, undefined);
    if (stat !== undefined && stat.nlink === 0) this.shrink(stat.size);
  }

  /** This instance is gone: the count is dropped when no instance of the process holds it. */
  release(): void {
    const usage = this.#usage;
    if (usage === undefined || this.#key === undefined) return;
    this.#usage = undefined;
    if (--usage.refs === 0) USAGE.delete(this.#key);
  }
}

interface Level {
  /** The parent's getdents64 position just after this directory's entry. */
  resume: bigint;
  /** The parent's device:inode, checked when coming back up through `..`. */
  parent: string;
}

/**
 * Counts the bytes and entries under `root` without following any symlink: one descriptor open at a time
 * whatever the depth (coming back up goes through `..`, checked against the identity recorded on the way down,
 * and the parent's listing resumes at its saved position), every entry charged FUEL_PER_DIRENT before it is read,
 * so the walk is bounded by the call's fuel and deadline. A mount inside is not entered.
 */
export function walk(root: number, io: QuotaIo): { bytes: number; entries: number } {
  const libc = loadLibc();
  const OPEN_DIR = O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  let cur = libc.openat(root, cPath('.'), OPEN_DIR, 0) as number;
  if (cur < 0) throw new HostErrno(lastErrno());
  const rootId = statxOf(cur, undefined)?.key ?? '';
  const device = rootId.slice(0, rootId.lastIndexOf(':'));
  let curId = rootId;
  const stack: Level[] = [];
  const seen = new Set<string>();
  const buf = Buffer.allocUnsafe(32 * 1024);
  let bytes = 0;
  let entries = 0;
  let pos = 0n;
  try {
    outer: for (;;) {
      libc.lseek(cur, pos, 0);
      const n = libc.getdents64(cur, buf, buf.length) as number;
      if (n < 0) throw new HostErrno(lastErrno());
      if (n === 0) {
        const level = stack.pop();
        if (level === undefined) break;
        const parent = libc.openat(cur, cPath('..'), OPEN_DIR, 0) as number;
        if (parent < 0) throw new HostErrno(lastErrno());
        if (statxOf(parent, undefined)?.key !== level.parent) {
          libc.close(parent);
          throw new HostErrno(E.EAGAIN); // moved while counted: the next call counts again
        }
        libc.close(cur);
        cur = parent;
        curId = level.parent;
        pos = level.resume;
        continue;
      }
      for (let at = 0; at < n; ) {
        const reclen = buf.readUInt16LE(at + 16);
        pos = buf.readBigInt64LE(at + 8);
        let type = buf[at + 18] ?? DT_UNKNOWN;
        const nameEnd = buf.indexOf(0, at + 19);
        const name = buf.subarray(at + 19, nameEnd < 0 || nameEnd > at + reclen ? at + reclen : nameEnd);
        at += reclen;
        if (
          (name.length === 1 && name[0] === 0x2e) ||
          (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
        )
          continue;
        io.charge(FUEL_PER_DIRENT + name.length * FUEL_PER_BYTE);
        entries++;
        let stat: Statx | undefined;
        if (type === DT_UNKNOWN || type === DT_REG) {
          stat = statxOf(cur, name);
          if (stat === undefined) continue;
          type = isDirectory(stat) ? DT_DIR : isRegular(stat) ? DT_REG : 0;
        }
        if (type === DT_REG && stat !== undefined) {
          if (stat.nlink > 1) {
            if (seen.has(stat.key)) continue;
            seen.add(stat.key);
          }
          bytes += stat.size;
        } else if (type === DT_DIR) {
          const child = libc.openat(cur, cPath(name), OPEN_DIR, 0) as number;
          if (child < 0) continue; // gone, swapped or unreadable: not counted
          const childId = statxOf(child, undefined)?.key ?? '';
          if (childId.slice(0, childId.lastIndexOf(':')) !== device) {
            libc.close(child);
            continue;
          }
          stack.push({ resume: pos, parent: curId });
          libc.close(cur);
          cur = child;
          curId = childId;
          pos = 0n;
          continue outer;
        }
      }
    }
  } finally {
    libc.close(cur);
  }
  return { bytes, entries };
}
