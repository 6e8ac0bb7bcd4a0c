import {
  AT_EMPTY_PATH,
  AT_SYMLINK_NOFOLLOW,
  cPath,
  lastErrno,
  loadLibc,
  UTIME_NOW,
  UTIME_OMIT,
} from '../libc.js';
import { FUEL_PER_BYTE } from './abi.js';
import { FUEL_PER_DIRENT, FUEL_WALK_STAT, statxOf } from './wasi-quota.js';
import { ERRNO, FILETYPE, FSTFLAG, HostErrno, WasiErrno, WHENCE } from './wasi-types.js';

const S_IFMT = 0o170000;
const statBuf = Buffer.alloc(256);
const direntBuf = Buffer.alloc(16 * 1024);
/** One getdents64 entry at its largest (19 bytes, a name of 255, its NUL, aligned to 8). */
const MIN_GETDENTS = 280;
const EINVAL = 22;
const timesBuf = Buffer.alloc(32);

/**
 * What one fd_readdir costs before its entries: the seek to the cookie (on ext4's hashed directories a block of the
 * listing read again from the hash) and the getdents64 call: 20-45 µs measured (a 20,000-entry directory read
 * through a 300-byte buffer, 4,000 calls: 181-258 ms of CPU; 5 entries through 64 KiB: ~23 µs a call). It was
 * two FUEL_PER_FS_OP (65,536).
 */
export const FUEL_PER_READDIR = 786_432;

/** WASI's filestat, from a statx. */
export interface Filestat {
  dev: bigint;
  ino: bigint;
  filetype: number;
  nlink: bigint;
  size: bigint;
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
}

export function filetypeOf(mode: number): number {
  switch (mode & S_IFMT) {
    case 0o040000:
      return FILETYPE.DIRECTORY;
    case 0o100000:
      return FILETYPE.REGULAR_FILE;
    case 0o120000:
      return FILETYPE.SYMBOLIC_LINK;
    case 0o020000:
      return FILETYPE.CHARACTER_DEVICE;
    case 0o060000:
      return FILETYPE.BLOCK_DEVICE;
    case 0o140000:
      return FILETYPE.SOCKET_STREAM;
    default:
      return FILETYPE.UNKNOWN;
  }
}

/** A Node fs call on a raw descriptor, its error as the errno it carries. */
export function sys<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    const errno = (error as { errno?: unknown }).errno;
    if (typeof errno === 'number') throw new HostErrno(-errno);
    throw error;
  }
}

/** A libc call's int answer: below zero, its errno. */
export function ok(rc: number | bigint): number {
  if (rc < 0) throw new HostErrno(lastErrno());
  return Number(rc);
}

const ns = (sec: bigint, nsec: number) => sec * 1_000_000_000n + BigInt(nsec);

export function filestatOf(fd: number, name?: Uint8Array, follow = false): Filestat {
  const flags = name === undefined ? AT_EMPTY_PATH : follow ? 0 : AT_SYMLINK_NOFOLLOW;
  ok(loadLibc().statx(fd, cPath(name ?? ''), flags, 0x7ff, statBuf) as number);
  const major = BigInt(statBuf.readUInt32LE(136));
  const minor = BigInt(statBuf.readUInt32LE(140));
  return {
    dev:
      ((major & 0xfffff000n) << 32n) |
      ((major & 0xfffn) << 8n) |
      ((minor & 0xffffff00n) << 12n) |
      (minor & 0xffn),
    ino: statBuf.readBigUInt64LE(32),
    filetype: filetypeOf(statBuf.readUInt16LE(28)),
    nlink: BigInt(statBuf.readUInt32LE(16)),
    size: statBuf.readBigUInt64LE(40),
    atim: ns(statBuf.readBigInt64LE(64), statBuf.readUInt32LE(72)),
    mtim: ns(statBuf.readBigInt64LE(112), statBuf.readUInt32LE(120)),
    ctim: ns(statBuf.readBigInt64LE(96), statBuf.readUInt32LE(104)),
  };
}

/** utimensat's two timespecs from WASI's timestamps and fstflags; EINVAL for a time both given and "now". */
export function timespecs(atim: bigint, mtim: bigint, fstflags: number): Buffer {
  if (
    (fstflags & FSTFLAG.ATIM && fstflags & FSTFLAG.ATIM_NOW) ||
    (fstflags & FSTFLAG.MTIM && fstflags & FSTFLAG.MTIM_NOW)
  )
    throw new WasiErrno(ERRNO.INVAL);
  if (fstflags & ~0xf) throw new WasiErrno(ERRNO.INVAL);
  const put = (at: number, set: number, now: number, value: bigint) => {
    if (fstflags & now) {
      timesBuf.writeBigInt64LE(0n, at);
      timesBuf.writeBigInt64LE(BigInt(UTIME_NOW), at + 8);
    } else if (fstflags & set) {
      timesBuf.writeBigInt64LE(value / 1_000_000_000n, at);
      timesBuf.writeBigInt64LE(value % 1_000_000_000n, at + 8);
    } else {
      timesBuf.writeBigInt64LE(0n, at);
      timesBuf.writeBigInt64LE(BigInt(UTIME_OMIT), at + 8);
    }
  };
  put(0, FSTFLAG.ATIM, FSTFLAG.ATIM_NOW, atim);
  put(16, FSTFLAG.MTIM, FSTFLAG.MTIM_NOW, mtim);
  return timesBuf;
}

/** A guest offset or length as a safe integer, or EINVAL. */
export function safe(value: bigint): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new WasiErrno(ERRNO.INVAL);
  return Number(value);
}

/** What one fd_readdir wrote: its bytes, and the d_next of its last whole entry and of its last entry at all. */
export interface Dirents {
  used: number;
  whole: bigint | undefined;
  last: bigint | undefined;
}

/**
 * fd_readdir: WASI dirents (d_next, d_ino, d_namlen, d_type, then the name) into `out` from the position
 * `cookie` (0, or a d_next given before: the host's own directory offset), the last one cut at the end of the
 * buffer as the spec says. Every entry is charged before it is copied. The kernel is asked for no more than the
 * guest's buffer takes (and for one longest entry only when the next is larger than that): a 16 KiB read for every
 * few entries a small buffer holds made the host read (and the plugin not pay for) a whole listing per handful of
 * entries, and what the kernel returns past what is written is read again by the next call, empty blocks between
 * included (wasi-fs.ts readdir: a call going on from the one before does not pay for the directory's size again).
 */
export function readDirents(
  fd: number,
  out: Uint8Array,
  cookie: bigint,
  charge: (fuel: number) => void,
): Dirents {
  if (cookie > 0x7fffffffffffffffn) throw new WasiErrno(ERRNO.INVAL);
  const libc = loadLibc();
  if (BigInt(libc.lseek(fd, cookie, WHENCE.SET) as number | bigint) < 0n) throw new HostErrno(lastErrno());
  const record = Buffer.alloc(24);
  const read: Dirents = { used: 0, whole: undefined, last: undefined };
  while (read.used < out.length) {
    // No more than the guest can take: a getdents64 record is at most 3 bytes longer than its WASI dirent.
    const want = Math.min(direntBuf.length, out.length - read.used + 24);
    let n = libc.getdents64(fd, direntBuf, want) as number;
    // EINVAL: the next entry alone is larger than `want`; one longest entry is room for it.
    if (n < 0 && want < MIN_GETDENTS && lastErrno() === EINVAL)
      n = libc.getdents64(fd, direntBuf, MIN_GETDENTS) as number;
    if (ok(n) === 0) break;
    for (let at = 0; at < n && read.used < out.length; ) {
      const reclen = direntBuf.readUInt16LE(at + 16);
      const nameEnd = direntBuf.indexOf(0, at + 19);
      const name = direntBuf.subarray(at + 19, nameEnd < 0 || nameEnd > at + reclen ? at + reclen : nameEnd);
      charge(FUEL_PER_DIRENT + (24 + name.length) * FUEL_PER_BYTE);
      let type = direntType(direntBuf[at + 18] ?? 0);
      if (type === FILETYPE.UNKNOWN) {
        charge(FUEL_WALK_STAT);
        const stat = statxOf(fd, name);
        if (stat !== undefined) type = filetypeOf(stat.mode);
      }
      const next = BigInt.asUintN(64, direntBuf.readBigInt64LE(at + 8));
      record.writeBigUInt64LE(next, 0);
      record.writeBigUInt64LE(direntBuf.readBigUInt64LE(at), 8);
      record.writeUInt32LE(name.length, 16);
      record.writeUInt32LE(type, 20);
      let whole = true;
      for (const piece of [record, name]) {
        const take = Math.min(piece.length, out.length - read.used);
        out.set(piece.subarray(0, take), read.used);
        read.used += take;
        whole &&= take === piece.length;
      }
      read.last = next;
      if (whole) read.whole = next;
      at += reclen;
    }
  }
  return read;
}

/** getdents64's d_type as a WASI filetype (DT_UNKNOWN: ask statx). */
function direntType(dt: number): number {
  switch (dt) {
    case 4:
      return FILETYPE.DIRECTORY;
    case 8:
      return FILETYPE.REGULAR_FILE;
    case 10:
      return FILETYPE.SYMBOLIC_LINK;
    case 2:
      return FILETYPE.CHARACTER_DEVICE;
    case 6:
      return FILETYPE.BLOCK_DEVICE;
    case 12:
      return FILETYPE.SOCKET_STREAM;
    default:
      return FILETYPE.UNKNOWN;
  }
}
