// The WASI filesystem of one instance: one preopened directory (the plugin's private directory), every path resolved
// beneath a host directory descriptor (wasi-path.ts), every operation on descriptors or through the *at calls;
// quotas counted in wasi-quota.ts, stats and dirents shaped in wasi-stat.ts. Longer than most files because it is
// the table of preview1's fd_* and path_* operations on host descriptors, each a few lines over the same rights,
// read-only and quota checks.

import { readvSync, writevSync } from 'node:fs';
import { constants } from 'node:os';
import {
  AT_REMOVEDIR,
  AT_SYMLINK_NOFOLLOW,
  cPath,
  F_SETFL,
  lastErrno,
  loadLibc,
  O_APPEND,
  O_CLOEXEC,
  O_DIRECTORY,
  O_DSYNC,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_SYNC,
} from '../libc.js';
import { FUEL_PER_BYTE } from './abi.js';
import type { QuotaLeases } from './quota-leases.js';
import type { FdEntry } from './wasi-fds.js';
import {
  type Charge,
  MAX_LINK_TARGET_BYTES,
  MAX_PATH_BYTES,
  openBeneath,
  type Parent,
  releaseParent,
  resolveParent,
} from './wasi-path.js';
import { DirQuota, FUEL_PER_DIR_BYTE, isRegular, type QuotaKind, type Statx, statxOf } from './wasi-quota.js';
import {
  type Filestat,
  FUEL_PER_READDIR,
  filestatOf,
  filetypeOf,
  ok,
  readDirents,
  safe,
  sys,
  timespecs,
} from './wasi-stat.js';
import {
  ALL_RIGHTS,
  DIR_RIGHTS,
  ERRNO,
  FDFLAG,
  FILE_RIGHTS,
  FILETYPE,
  HostErrno,
  LOOKUP_SYMLINK_FOLLOW,
  OFLAG,
  RIGHT,
  WasiErrno,
  WHENCE,
} from './wasi-types.js';

/** The directory a plugin's WASI program sees (docs/ABI-wasm.md, "The filesystem"). */
export interface WasiFilesystem {
  /** Absolute path of the plugin's private directory, as seen by the process running the WASM. */
  hostPath: string;
  /** The preopen's name the guest sees. Default DEFAULT_GUEST_NAME. */
  guestName?: string;
  /** permissions.filesystem = "read": every change answers EROFS. */
  readOnly: boolean;
  /** limits.disk_mb in bytes; 0 = unlimited. */
  diskBytes: number;
  /** limits.max_files; 0 = unlimited. */
  maxFiles: number;
  /**
   * The host's ledger of the directory's quotas, where other processes may write it at once (a runner: replicas, an
   * upgrade's overlap; quota-leases.ts). Absent in mode none, where this process's count is the only one.
   */
  leases?: QuotaLeases;
}

export const DEFAULT_GUEST_NAME = '/data';

/** What the engine asks of the runtime: fuel for its work, and a report when a quota refuses a call. */
export interface FsIo {
  charge(fuel: number): void;
  quotaExceeded(kind: QuotaKind, limit: number): void;
}

/**
 * Fuel per filesystem operation, on top of the import's own: a system call or a few through koffi (fd_filestat_get
 * 2.1-3.1 µs, fd_read of a byte 1.4-1.8 µs; bench/import-fuel.ts).
 */
export const FUEL_PER_FS_OP = 32_768;
/**
 * Per operation on a path, on top of FUEL_PER_FS_OP: the path resolved beneath the directory, component by component
 * where openat2 is missing, and the descriptors opened and closed for it (path_filestat_get 5.8-7.9 µs on session
 * 17's machine, 13-16 µs on session 18's, where 2^16 ran at 2.1-2.2x plain instructions' CPU per fuel).
 */
export const FUEL_PER_PATH_OP = 131_072;
/**
 * Per name made or removed (a create, mkdir, symlink, link, rename, unlink, rmdir), on top of FUEL_PER_PATH_OP: the
 * file system's own work for it, its inode and directory blocks, and on ext4 its journal: a make and a remove took
 * 50-113 µs of CPU on a journaled ext4 (session 20), 2.0-4.6x plain instructions' CPU per fuel without this. On
 * ext4 without a journal, after many removals, a make can take ~1 ms (the host warns data_dir_unjournaled).
 */
export const FUEL_PER_NAME_CHANGE = 524_288;
/**
 * Per byte written to a file (FUEL_PER_BYTE is its copy): the page-cache pages and delayed-allocation blocks a write
 * that extends a file takes (a 1 MiB pwrite that extends: 200-285 µs, over cached pages 52 µs), and their later
 * writeback and freeing (a truncate of 1 MiB of dirty pages 49-66 µs, ext4's flush at close after a truncate to 0
 * 55-80 µs), which a truncate or an unlink then need not pay: at 1 a byte a write, truncate and close of 1 MiB ran
 * at 6.6-9.3x plain instructions' CPU per fuel (session 20; 1.45x at 8). Overwrites are over-priced by as much.
 */
export const FUEL_PER_FILE_BYTE = 8;
/**
 * Per iovec a read or write of a file gives the kernel (on top of FUEL_PER_IOVEC): preadv/pwritev take ~100 ns an
 * iovec through Node (1,024 one-byte iovecs: ~190-220 us a call in all, 30-74x plain instructions' CPU per fuel
 * before this price; the fifth review, session 21, found them a system call each, ~1.1 µs an iovec, at 16 fuel).
 */
export const FUEL_PER_FILE_IOVEC = 2_048;
/** Per byte fd_allocate reserves (256 a 4 KiB block, with the import's price: 16 MiB allocated and freed ~1.3x). */
export const FUEL_PER_ALLOCATED_BYTE = 1 / 16;
/** The most bytes one fd_read/fd_write/fd_pread/fd_pwrite moves; more is a short read or write, as POSIX allows. */
export const MAX_IO_BYTES = 16 * 1024 * 1024;

const E = constants.errno;
const WRITE_RIGHTS = RIGHT.FD_WRITE | RIGHT.FD_DATASYNC | RIGHT.FD_ALLOCATE | RIGHT.FD_FILESTAT_SET_SIZE;
const READ_RIGHTS = RIGHT.FD_READ | RIGHT.FD_READDIR;
const linkBuf = Buffer.alloc(MAX_PATH_BYTES);

export class WasiFs {
  readonly #fs: WasiFilesystem;
  readonly #io: FsIo;
  readonly #quota: DirQuota;
  /** The call's charge, given to path resolution (wasi-path.ts), which charges each component and link. */
  readonly #charge: Charge;
  #root = -1;

  /** `fs` is the same object for every instance of a plugin's runtime: its quota's count is kept on it. */
  constructor(fs: WasiFilesystem, io: FsIo) {
    this.#fs = fs;
    this.#io = io;
    this.#charge = (fuel) => io.charge(fuel);
    this.#quota = new DirQuota(
      fs,
      () => this.#rootFd(),
      fs.diskBytes,
      fs.maxFiles,
      {
        charge: (fuel) => io.charge(fuel),
        exceeded: (kind, limit) => io.quotaExceeded(kind, limit),
      },
      fs.leases,
    );
  }

  /** The preopen's table entry; its host descriptor is opened on first use. */
  static preopen(fs: WasiFilesystem): FdEntry {
    return {
      kind: 'dir',
      filetype: FILETYPE.DIRECTORY,
      base: DIR_RIGHTS,
      inheriting: ALL_RIGHTS,
      flags: 0,
      host: -1,
      preopen: Buffer.from(fs.guestName ?? DEFAULT_GUEST_NAME),
    };
  }

  /** The plugin's directory itself, opened once (not following a symlink at its last component). */
  #rootFd(): number {
    if (this.#root < 0) {
      const fd = loadLibc().openat(-100, cPath(this.#fs.hostPath), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
      this.#root = ok(fd as number);
    }
    return this.#root;
  }

  /** The host descriptor of a file or directory entry (a preopen's own, opened now if it was not yet). */
  host(entry: FdEntry): number {
    if (entry.host < 0) {
      if (entry.preopen === undefined) throw new WasiErrno(ERRNO.BADF);
      entry.host = ok(loadLibc().openat(this.#rootFd(), cPath('.'), O_DIRECTORY | O_CLOEXEC, 0) as number);
    }
    return entry.host;
  }

  /** An entry leaves the table: its host descriptor is closed. */
  close(entry: FdEntry): void {
    if (entry.host < 0) return;
    if (entry.key !== undefined) this.#quota.closing(entry.key, entry.host);
    loadLibc().close(entry.host);
    entry.host = -1;
  }

  /** The instance is gone (every entry already closed): its directory is closed; the count stays with the runtime. */
  release(): void {
    this.#quota.release();
    if (this.#root >= 0) loadLibc().close(this.#root);
    this.#root = -1;
  }

  #need(entry: FdEntry, rights: number): number {
    if ((entry.base & rights) !== rights) throw new WasiErrno(ERRNO.NOTCAPABLE);
    this.#io.charge(FUEL_PER_FS_OP);
    return this.host(entry);
  }

  /**
   * Before any change: refused when read-only. Before one that makes, removes or moves a name (`names`), the quota's
   * count is made first if it is not yet: a walk a call left unfinished (its fuel ran out) is completed before any
   * name can move from the part it has not read to the part it has.
   */
  #writable(names = false): void {
    if (this.#fs.readOnly) throw new WasiErrno(ERRNO.ROFS);
    if (names) this.#quota.ready();
  }

  // --- descriptors ---------------------------------------------------------------------------------

  filestat(entry: FdEntry): Filestat {
    return filestatOf(this.#need(entry, RIGHT.FD_FILESTAT_GET));
  }

  setFlags(entry: FdEntry, flags: number): void {
    const fd = this.#need(entry, RIGHT.FD_FDSTAT_SET_FLAGS);
    const fixed = FDFLAG.DSYNC | FDFLAG.RSYNC | FDFLAG.SYNC;
    if ((flags & fixed) !== (entry.flags & fixed) || flags & ~0x1f) throw new WasiErrno(ERRNO.NOTSUP);
    if (flags & FDFLAG.APPEND) this.#writable();
    const host = (flags & FDFLAG.APPEND ? O_APPEND : 0) | (flags & FDFLAG.NONBLOCK ? O_NONBLOCK : 0);
    ok(loadLibc().fcntl(fd, F_SETFL, 'int', host) as number);
    entry.flags = flags;
  }

  read(entry: FdEntry, views: Uint8Array[], position: bigint | undefined): number {
    const fd = this.#need(entry, RIGHT.FD_READ);
    const at = position === undefined ? null : safe(position);
    let budget = views.reduce((n, v) => n + v.length, 0);
    budget = Math.min(budget, MAX_IO_BYTES);
    this.#io.charge(budget * FUEL_PER_BYTE);
    // One preadv for every iovec: a system call per iovec ran 1,024 one-byte iovecs at ~400x plain instructions'
    // CPU per fuel (the fifth review, F2).
    const list = upTo(views, budget);
    this.#io.charge(list.length * FUEL_PER_FILE_IOVEC);
    return list.length === 0 ? 0 : sys(() => readvSync(fd, list, at ?? undefined));
  }

  write(entry: FdEntry, chunks: Uint8Array[], position: bigint | undefined): number {
    const fd = this.#need(entry, RIGHT.FD_WRITE);
    this.#writable();
    const at = position === undefined ? null : safe(position);
    const budget = Math.min(
      chunks.reduce((n, c) => n + c.length, 0),
      MAX_IO_BYTES,
    );
    this.#io.charge(budget * FUEL_PER_FILE_BYTE);
    let before = -1;
    let reserved = 0;
    if (this.#fs.diskBytes > 0 && entry.key !== undefined) {
      // The quota's work around the write: the size before and after, and the offset (a 1-byte write ~7 µs).
      this.#io.charge(2 * FUEL_PER_FS_OP);
      before = this.#size(fd);
      const start =
        entry.flags & FDFLAG.APPEND
          ? before
          : (at ?? Number(loadLibc().lseek(fd, 0, WHENCE.CUR) as number | bigint));
      reserved = Math.max(0, start + budget - before);
      this.#quota.grow(reserved);
    }
    try {
      // One pwritev for every iovec (see read).
      const list = upTo(chunks, budget);
      this.#io.charge(list.length * FUEL_PER_FILE_IOVEC);
      return list.length === 0 ? 0 : sys(() => writevSync(fd, list, at ?? undefined));
    } finally {
      if (before >= 0) this.#quota.shrink(reserved - Math.max(0, this.#size(fd) - before));
    }
  }

  #size(fd: number): number {
    const stat = statxOf(fd, undefined);
    if (stat === undefined) throw new HostErrno(lastErrno());
    return stat.size;
  }

  /** Bytes past a regular file's offset (poll_oneoff's nbytes); 0 for anything else. */
  readable(entry: FdEntry): bigint {
    if (entry.host < 0 || entry.filetype !== FILETYPE.REGULAR_FILE) return 0n;
    // A statx and an lseek: poll_oneoff asks once per descriptor a poll names (the fifth review, F1: each file
    // subscription paid 100 fuel for them, ~165x under plain instructions' CPU per fuel).
    this.#io.charge(2 * FUEL_PER_FS_OP);
    const stat = statxOf(entry.host, undefined);
    const at = BigInt(loadLibc().lseek(entry.host, 0, WHENCE.CUR) as number | bigint);
    if (stat === undefined || at < 0n) return 0n;
    const left = BigInt(stat.size) - at;
    return left > 0n ? left : 0n;
  }

  seek(entry: FdEntry, offset: bigint, whence: number): bigint {
    const right = offset === 0n && whence === WHENCE.CUR ? RIGHT.FD_TELL : RIGHT.FD_SEEK;
    if ((entry.base & (right | RIGHT.FD_SEEK)) === 0) throw new WasiErrno(ERRNO.NOTCAPABLE);
    const fd = this.#need(entry, 0);
    if (whence !== WHENCE.SET && whence !== WHENCE.CUR && whence !== WHENCE.END)
      throw new WasiErrno(ERRNO.INVAL);
    const result = BigInt(loadLibc().lseek(fd, offset, whence) as number | bigint);
    if (result < 0n) throw new HostErrno(lastErrno());
    return result;
  }

  sync(entry: FdEntry, data: boolean): void {
    const fd = this.#need(entry, data ? RIGHT.FD_DATASYNC : RIGHT.FD_SYNC);
    ok((data ? loadLibc().fdatasync(fd) : loadLibc().fsync(fd)) as number);
  }

  /**
   * fd_advise: checked, then not acted on. WASI makes it a hint; passed to the kernel, WILLNEED read back or looked
   * up every page of the range (16 MiB cached: 37-159 µs) and DONTNEED dropped them (120-370 µs) for one import's
   * price, 66-206x plain instructions' CPU per fuel (session 20); and WASI's advice numbers are not Linux's
   * (sequential and random are swapped).
   */
  advise(entry: FdEntry, offset: bigint, len: bigint, advice: number): void {
    this.#need(entry, RIGHT.FD_ADVISE);
    if (advice > 5) throw new WasiErrno(ERRNO.INVAL);
    safe(offset);
    safe(len);
  }

  allocate(entry: FdEntry, offset: bigint, len: bigint): void {
    const fd = this.#need(entry, RIGHT.FD_ALLOCATE);
    this.#writable();
    const start = safe(offset);
    const length = safe(len);
    if (length === 0) throw new WasiErrno(ERRNO.INVAL);
    this.#resize(fd, entry, start + length, true, () => {
      this.#io.charge(Math.ceil(length * FUEL_PER_ALLOCATED_BYTE)); // after the quota's refusal, before the work
      const rc = loadLibc().posixFallocate(fd, start, length) as number;
      if (rc !== 0) throw new HostErrno(rc === E.EOPNOTSUPP ? E.ENOTSUP : rc);
    });
  }

  setSize(entry: FdEntry, size: bigint): void {
    const fd = this.#need(entry, RIGHT.FD_FILESTAT_SET_SIZE);
    this.#writable();
    const end = safe(size);
    this.#resize(fd, entry, end, false, () => ok(loadLibc().ftruncate(fd, end) as number));
  }

  /** A size change charged to the quota before it happens (`growOnly`: fd_allocate never shrinks a file). */
  #resize(fd: number, entry: FdEntry, end: number, growOnly: boolean, change: () => void): void {
    if (this.#fs.diskBytes === 0 || entry.key === undefined) {
      change();
      return;
    }
    const before = this.#size(fd);
    const growth = end - before;
    if (growth > 0) this.#quota.grow(growth);
    try {
      change();
    } catch (error) {
      if (growth > 0) this.#quota.shrink(growth);
      throw error;
    }
    if (growth < 0 && !growOnly) this.#quota.shrink(-growth);
  }

  setTimes(entry: FdEntry, atim: bigint, mtim: bigint, fstflags: number): void {
    const fd = this.#need(entry, RIGHT.FD_FILESTAT_SET_TIMES);
    const times = timespecs(atim, mtim, fstflags);
    this.#writable();
    ok(loadLibc().futimens(fd, times) as number);
  }

  /** fd_readdir (wasi-stat.ts readDirents): WASI dirents from the position `cookie`; returns the bytes used. */
  readdir(entry: FdEntry, out: Uint8Array, cookie: bigint): number {
    const fd = this.#need(entry, RIGHT.FD_READDIR);
    // A seek to the cookie and getdents64 until the buffer is full or the directory ends (wasi-stat.ts), through
    // every block on the way, empty or not (an emptied ext4 directory keeps its blocks): a listing pays for the
    // directory's size (FUEL_PER_DIR_BYTE) at its first call. A call from where the one before stopped (its last
    // whole entry, or its last) reads on, again only what that call's kernel read returned past what it wrote, so
    // it does not pay for the size again, only for what the directory grew by since it paid (the fifth review, F3:
    // a listing begun on a small directory, which then grew, read on through all of it unpaid); any other cookie
    // pays for all of it.
    const listed = entry.listedTo;
    entry.listedTo = undefined;
    const goesOn = listed !== undefined && (cookie === listed.whole || cookie === listed.last);
    const size = statxOf(fd, undefined)?.size ?? 0;
    const paid = goesOn ? Math.max(listed.paid, size) : size;
    this.#io.charge(FUEL_PER_READDIR + (goesOn ? paid - listed.paid : size) * FUEL_PER_DIR_BYTE);
    const read = readDirents(fd, out, cookie, (fuel) => this.#io.charge(fuel));
    // readDirents sets `last` whenever it sets `whole` (the whole entry is an entry).
    if (read.whole !== undefined) entry.listedTo = { whole: read.whole, last: read.last ?? read.whole, paid };
    return read.used;
  }

  // --- paths ---------------------------------------------------------------------------------------

  /** The directory entry's host descriptor for a path call needing `rights`. */
  #dir(entry: FdEntry, rights: number): number {
    if (entry.kind !== 'dir') {
      if ((entry.base & rights) !== rights) throw new WasiErrno(ERRNO.NOTCAPABLE);
      throw new WasiErrno(ERRNO.NOTDIR);
    }
    const fd = this.#need(entry, rights);
    this.#io.charge(FUEL_PER_PATH_OP);
    return fd;
  }

  /** A change to the names in `dirs`: its price, and the quota's measure of what it made them take. */
  #names<T>(dirs: readonly number[], adds: boolean, change: () => T): T {
    this.#io.charge(FUEL_PER_NAME_CHANGE);
    return this.#quota.changingNames(dirs, adds, change);
  }

  /** A name made by `make` in `dirs`: counted as one (given back if `make` throws), and priced and measured (#names). */
  #newName<T>(dirs: readonly number[], make: () => T): T {
    return this.#names(dirs, true, () => {
      this.#quota.addEntry();
      try {
        return make();
      } catch (error) {
        this.#quota.removeEntry();
        throw error;
      }
    });
  }

  #parent<T>(dirfd: number, path: Uint8Array, run: (parent: Parent) => T): T {
    const parent = resolveParent(dirfd, path, this.#charge);
    try {
      return run(parent);
    } finally {
      releaseParent(parent);
    }
  }

  createDirectory(entry: FdEntry, path: Uint8Array): void {
    const dirfd = this.#dir(entry, RIGHT.PATH_CREATE_DIRECTORY);
    this.#writable(true);
    this.#parent(dirfd, path, (p) =>
      this.#newName([p.fd], () => {
        ok(loadLibc().mkdirat(p.fd, cPath(p.name), 0o777) as number);
        // 0777 whatever the umask: each process-mode sandbox runs as a uid of its own, and all must keep using it.
        const fd = loadLibc().openat(
          p.fd,
          cPath(withoutSlash(p.name)),
          O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
          0,
        );
        if ((fd as number) >= 0) {
          try {
            loadLibc().fchmod(fd, 0o777);
            this.#quota.madeDirectory(statxOf(fd, undefined)?.size ?? 0);
          } finally {
            loadLibc().close(fd);
          }
        }
      }),
    );
  }

  /** path_open: the new entry (the caller numbers it). */
  open(
    dir: FdEntry,
    lookup: number,
    path: Uint8Array,
    oflags: number,
    base: bigint,
    inheriting: bigint,
    fdflags: number,
  ): FdEntry {
    let needed = RIGHT.PATH_OPEN;
    if (oflags & OFLAG.CREAT) needed |= RIGHT.PATH_CREATE_FILE;
    if (oflags & OFLAG.TRUNC) needed |= RIGHT.PATH_FILESTAT_SET_SIZE;
    const dirfd = this.#dir(dir, needed);
    // What the descriptor may get: what was asked, within what the directory passes on (more is dropped, not refused).
    const wantBase = Number(base & 0x3fffffffn) & dir.inheriting;
    const wantInheriting = Number(inheriting & 0x3fffffffn);
    const write = (wantBase & WRITE_RIGHTS) !== 0 || (oflags & OFLAG.TRUNC) !== 0;
    const read = (wantBase & READ_RIGHTS) !== 0 || !write;
    if (oflags & (OFLAG.CREAT | OFLAG.TRUNC) || write || fdflags & FDFLAG.APPEND) this.#writable(true);
    let flags = (read && write ? 2 : write ? 1 : 0) | O_NOCTTY;
    if (oflags & OFLAG.DIRECTORY) flags |= O_DIRECTORY;
    if ((lookup & LOOKUP_SYMLINK_FOLLOW) === 0) flags |= O_NOFOLLOW;
    if (fdflags & FDFLAG.APPEND) flags |= O_APPEND;
    if (fdflags & FDFLAG.NONBLOCK) flags |= O_NONBLOCK;
    if (fdflags & FDFLAG.DSYNC) flags |= O_DSYNC;
    if (fdflags & (FDFLAG.SYNC | FDFLAG.RSYNC)) flags |= O_SYNC;
    const CREAT = 0o100;
    const EXCL = 0o200;
    let fd: number;
    let created = false;
    if ((oflags & OFLAG.CREAT) === 0) fd = openBeneath(dirfd, path, flags, this.#charge);
    else if (oflags & OFLAG.EXCL) {
      fd = this.#create(dirfd, path, flags | CREAT | EXCL);
      created = true;
    } else {
      try {
        fd = openBeneath(dirfd, path, flags, this.#charge);
      } catch (error) {
        if (!(error instanceof HostErrno) || error.errno !== E.ENOENT) throw error;
        fd = this.#create(dirfd, path, flags | CREAT | O_NOFOLLOW);
        created = true;
      }
    }
    try {
      return this.#opened(dir, fd, created, oflags, wantBase, wantInheriting, fdflags);
    } catch (error) {
      loadLibc().close(fd);
      throw error;
    }
  }

  /**
   * Makes the file `path` names, in the directory that holds its last component, counted as a name and by what
   * that directory grew (changingNames). The last component is never followed: a symlink there that points nowhere
   * would have the file made in another directory than the one measured (ELOOP; EEXIST with O_EXCL, as always).
   */
  #create(dirfd: number, path: Uint8Array, flags: number): number {
    return this.#parent(dirfd, path, (p) =>
      this.#newName([p.fd], () => openBeneath(p.fd, p.name, flags, this.#charge, 0o666)),
    );
  }

  #opened(
    dir: FdEntry,
    fd: number,
    created: boolean,
    oflags: number,
    wantBase: number,
    wantInheriting: number,
    fdflags: number,
  ): FdEntry {
    const stat = statxOf(fd, undefined);
    if (stat === undefined) throw new HostErrno(lastErrno());
    const filetype = filetypeOf(stat.mode);
    // Whatever the umask (see createDirectory); through libc: Node's fchmodSync is disabled under its permission
    // model, which process-mode runners run with.
    if (created && isRegular(stat)) loadLibc().fchmod(fd, 0o666);
    if (oflags & OFLAG.TRUNC && isRegular(stat)) this.#truncated(fd, stat);
    const isDir = filetype === FILETYPE.DIRECTORY;
    const entry: FdEntry = {
      kind: isDir ? 'dir' : 'file',
      filetype,
      base: wantBase & (isDir ? DIR_RIGHTS : FILE_RIGHTS) & dir.inheriting,
      inheriting: wantInheriting & dir.inheriting,
      flags: fdflags & 0x1f,
      host: fd,
    };
    if ((isRegular(stat) || isDir) && this.#quota.active) {
      entry.key = stat.key;
      this.#quota.opened(stat.key, fd, isRegular(stat));
    }
    return entry;
  }

  #truncated(fd: number, stat: Statx): void {
    ok(loadLibc().ftruncate(fd, 0) as number);
    if (this.#fs.diskBytes > 0) this.#quota.shrink(stat.size);
  }

  pathFilestat(entry: FdEntry, lookup: number, path: Uint8Array): Filestat {
    const dirfd = this.#dir(entry, RIGHT.PATH_FILESTAT_GET);
    const follow = (lookup & LOOKUP_SYMLINK_FOLLOW) !== 0;
    const fd = openBeneath(dirfd, path, O_PATH | (follow ? 0 : O_NOFOLLOW), this.#charge);
    try {
      return filestatOf(fd);
    } finally {
      loadLibc().close(fd);
    }
  }

  pathSetTimes(
    entry: FdEntry,
    lookup: number,
    path: Uint8Array,
    atim: bigint,
    mtim: bigint,
    fstflags: number,
  ): void {
    const dirfd = this.#dir(entry, RIGHT.PATH_FILESTAT_SET_TIMES);
    const times = timespecs(atim, mtim, fstflags);
    this.#writable();
    const follow = (lookup & LOOKUP_SYMLINK_FOLLOW) !== 0;
    this.#parent(dirfd, path, (p) => {
      if (!follow && !p.trailingSlash) {
        ok(loadLibc().utimensat(p.fd, cPath(p.name), times, AT_SYMLINK_NOFOLLOW) as number);
        return;
      }
      // Following: the target is resolved beneath the directory and changed through a descriptor of its own.
      const fd = openBeneath(p.fd, p.name, O_NONBLOCK | O_NOCTTY, this.#charge);
      try {
        ok(loadLibc().futimens(fd, times) as number);
      } finally {
        loadLibc().close(fd);
      }
    });
  }

  link(oldEntry: FdEntry, lookup: number, oldPath: Uint8Array, newEntry: FdEntry, newPath: Uint8Array): void {
    const oldDir = this.#dir(oldEntry, RIGHT.PATH_LINK_SOURCE);
    const newDir = this.#dir(newEntry, RIGHT.PATH_LINK_TARGET);
    this.#writable(true);
    // Following the source would need linkat(AT_SYMLINK_FOLLOW), which follows links out of the directory.
    if (lookup & LOOKUP_SYMLINK_FOLLOW) throw new WasiErrno(ERRNO.INVAL);
    this.#parent(oldDir, oldPath, (from) => {
      if (from.trailingSlash) {
        // "name/" makes linkat follow a symlink: resolved beneath instead; a directory cannot be linked anyway.
        loadLibc().close(openBeneath(from.fd, from.name, O_PATH, this.#charge));
        throw new HostErrno(E.EPERM);
      }
      this.#parent(newDir, newPath, (to) =>
        this.#newName([to.fd], () =>
          ok(loadLibc().linkat(from.fd, cPath(from.name), to.fd, cPath(to.name), 0) as number),
        ),
      );
    });
  }

  readlink(entry: FdEntry, path: Uint8Array): Buffer {
    const dirfd = this.#dir(entry, RIGHT.PATH_READLINK);
    const fd = openBeneath(dirfd, path, O_PATH | O_NOFOLLOW, this.#charge);
    try {
      const n = ok(loadLibc().readlinkat(fd, cPath(''), linkBuf, linkBuf.length) as number);
      this.#io.charge(n * FUEL_PER_BYTE);
      return Buffer.from(linkBuf.subarray(0, n));
    } finally {
      loadLibc().close(fd);
    }
  }

  removeDirectory(entry: FdEntry, path: Uint8Array): void {
    const dirfd = this.#dir(entry, RIGHT.PATH_REMOVE_DIRECTORY);
    this.#writable(true);
    this.#parent(dirfd, path, (p) => {
      const stat = this.#quota.active ? statxOf(p.fd, withoutSlash(p.name)) : undefined;
      this.#names([p.fd], false, () => ok(loadLibc().unlinkat(p.fd, cPath(p.name), AT_REMOVEDIR) as number));
      if (stat !== undefined) this.#quota.removed(stat);
      else this.#quota.removeEntry();
    });
  }

  unlinkFile(entry: FdEntry, path: Uint8Array): void {
    const dirfd = this.#dir(entry, RIGHT.PATH_UNLINK_FILE);
    this.#writable(true);
    this.#parent(dirfd, path, (p) => {
      const stat = this.#quota.active ? statxOf(p.fd, withoutSlash(p.name)) : undefined;
      const { elsewhere } = this.#quota.removing(p.fd, withoutSlash(p.name), stat, () =>
        this.#names([p.fd], false, () => ok(loadLibc().unlinkat(p.fd, cPath(p.name), 0) as number)),
      );
      if (stat !== undefined) this.#quota.removed(stat, elsewhere);
    });
  }

  rename(oldEntry: FdEntry, oldPath: Uint8Array, newEntry: FdEntry, newPath: Uint8Array): void {
    const oldDir = this.#dir(oldEntry, RIGHT.PATH_RENAME_SOURCE);
    const newDir = this.#dir(newEntry, RIGHT.PATH_RENAME_TARGET);
    this.#writable(true);
    this.#parent(oldDir, oldPath, (from) =>
      this.#parent(newDir, newPath, (to) => {
        const active = this.#quota.active;
        const source = active ? statxOf(from.fd, withoutSlash(from.name)) : undefined;
        const target = active ? statxOf(to.fd, withoutSlash(to.name)) : undefined;
        // Over an existing name, ext4 rewrites the entry in place: no headroom needed (write and rename over).
        const over = target !== undefined && source !== undefined && target.key !== source.key;
        const { elsewhere } = this.#quota.removing(
          to.fd,
          withoutSlash(to.name),
          over ? target : undefined,
          () =>
            this.#names([from.fd, to.fd], target === undefined, () =>
              ok(loadLibc().renameat(from.fd, cPath(from.name), to.fd, cPath(to.name)) as number),
            ),
        );
        if (over) this.#quota.removed(target, elsewhere);
      }),
    );
  }

  symlink(target: Uint8Array, entry: FdEntry, path: Uint8Array): void {
    const dirfd = this.#dir(entry, RIGHT.PATH_SYMLINK);
    this.#writable(true);
    // A target is at most MAX_LINK_TARGET_BYTES (wasi-path.ts says why), as on macOS and the BSDs.
    if (target.length > MAX_LINK_TARGET_BYTES) throw new WasiErrno(ERRNO.NAMETOOLONG);
    if (target.indexOf(0) >= 0) throw new WasiErrno(ERRNO.INVAL);
    // An absolute target could never be followed here (resolution stays beneath the directory): refused at once.
    if (target[0] === 0x2f) throw new WasiErrno(ERRNO.NOTCAPABLE);
    this.#parent(dirfd, path, (p) =>
      this.#newName([p.fd], () => ok(loadLibc().symlinkat(cPath(target), p.fd, cPath(p.name)) as number)),
    );
  }
}

function withoutSlash(name: Buffer): Buffer {
  let end = name.length;
  while (end > 1 && name[end - 1] === 0x2f) end--;
  return name.subarray(0, end);
}

/**
 * `views` cut to their first `budget` bytes (MAX_IO_BYTES: more is a short read or write), empty ones left out (an
 * empty list is nothing to do: preadv of none is EINVAL through Node).
 */
function upTo(views: Uint8Array[], budget: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = budget;
  for (const view of views) {
    if (left <= 0) break;
    if (view.length === 0) continue;
    out.push(view.length <= left ? view : view.subarray(0, left));
    left -= view.length;
  }
  return out;
}
