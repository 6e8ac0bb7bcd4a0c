import { randomFillSync } from 'node:crypto';
import { constants } from 'node:os';
import { FUEL_PER_BYTE, FUEL_PER_IOVEC, FUEL_PER_RANDOM_BYTE, FUEL_PER_REFUSAL, MAX_IOVECS } from './abi.js';
import { type FdEntry, FdTable, stdioEntries } from './wasi-fds.js';
import { type FsIo, type WasiFilesystem, WasiFs } from './wasi-fs.js';
import { WasiExit } from './wasi-names.js';
import { MAX_PATH_BYTES } from './wasi-path.js';
import { monotonicNs, pollOneoff, realtimeNs } from './wasi-poll.js';
import type { QuotaKind } from './wasi-quota.js';
import type { Filestat } from './wasi-stat.js';
import { CLOCK, ERRNO, FILETYPE, HostErrno, RIGHT, WasiErrno, wasiErrno } from './wasi-types.js';

const ENOSPC = constants.errno.ENOSPC;

export type { WasiFilesystem } from './wasi-fs.js';
export { DEFAULT_GUEST_NAME } from './wasi-fs.js';

/**
 * WASI preview1 for plugins, in process (docs/ABI-wasm.md, "WASI"): stdin is the call's input (command modules)
 * or empty, stdout and stderr go to sinks the runtime chooses (the plugin's output or log), args and environment
 * are only what the manifest sets, clocks, randomness and poll_oneoff's sleeps are allowed (sleeps bounded by
 * the call's deadline), and the only filesystem is the plugin's own directory when it was granted one
 * (wasi-fs.ts): preopened at fd 3 under its guest name, every path resolved beneath it. There are no sockets:
 * sock_* answer EBADF for a descriptor that is not open and ENOTSOCK for one that is. We do not use `node:wasi`:
 * it can only send stdio to real file descriptors, and Node's docs say it is not a filesystem security boundary.
 */
export { WASI_FUNCTIONS, WASI_MODULE, WasiExit } from './wasi-names.js';

export interface WasiIo {
  /** Reads up to `max` bytes of stdin. */
  stdin(max: number): Uint8Array;
  /** Bytes of stdin not read yet (poll_oneoff's nbytes). Default 0. */
  stdinLeft?(): number;
  /** `bytes` is a view of guest memory, valid only during the call: keep a copy. */
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  /**
   * Charges `fuel` for work about to be done, and throws (fuel, deadline) when the call may not do it. Called
   * before every piece of work proportional to a plugin-chosen size, so no call does unbounded work unpaid.
   */
  charge(fuel: number): void;
  /**
   * Blocks until the monotonic clock (process.hrtime.bigint) reads `untilNs`, and throws the call's timeout
   * instead of sleeping past its deadline. Default: sleeps at most DEFAULT_SLEEP_CAP_MS at a time.
   */
  sleep?(untilNs: bigint): void;
  /** A quota of the filesystem refused a call (it answers EDQUOT): the runtime reports it. */
  quotaExceeded?(kind: QuotaKind, limit: number): void;
  /** Registers `close`, run once when the instance is dropped: how the filesystem's host descriptors are closed. */
  atDrop?(close: () => void): void;
}

/** The longest one sleep lasts when the runtime gives no `sleep` of its own. */
export const DEFAULT_SLEEP_CAP_MS = 5_000;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** Signals whose default action is to ignore them (or to stop, which an instance cannot): proc_raise does nothing. */
const IGNORED_SIGNALS: ReadonlySet<number> = new Set([0, 16, 17, 18, 19, 20, 21, 22, 27]);

/**
 * The import object for `wasi_snapshot_preview1`. `memory()` returns the guest memory (it can be replaced by
 * growth), and each pointer is bounds-checked by DataView/Uint8Array or `region`, whose RangeError the runtime
 * reports as `wasm_out_of_bounds`. `fs`: the plugin's directory, when it was granted one. Long because it is a
 * table of the import functions, each a few lines over the same memory accessors, descriptor table and fuel
 * charge defined at its top; split, each piece would need them all passed in.
 */
export function wasiImports(
  args: readonly string[],
  env: Readonly<Record<string, string>>,
  memory: () => WebAssembly.Memory,
  io: WasiIo,
  fs?: WasiFilesystem,
): Record<string, (...a: never[]) => number | undefined> {
  const enc = new TextEncoder();
  const argBytes = args.map((a) => enc.encode(`${a}\0`));
  const envBytes = Object.entries(env).map(([k, v]) => enc.encode(`${k}=${v}\0`));
  const view = () => new DataView(memory().buffer);
  const bytes = () => new Uint8Array(memory().buffer);
  const region = (ptr: number, len: number) => {
    const b = bytes();
    const p = ptr >>> 0;
    const n = len >>> 0;
    if (p + n > b.length) throw new RangeError('out of bounds');
    return b.subarray(p, p + n);
  };

  // The filesystem engine is built on the first call that needs it: plugins that never touch a file pay nothing.
  let engine: WasiFs | undefined;
  const fsIo: FsIo = {
    charge: (fuel) => io.charge(fuel),
    quotaExceeded: (kind, limit) => io.quotaExceeded?.(kind, limit),
  };
  const files = (): WasiFs => {
    if (engine !== undefined) return engine;
    if (fs === undefined) throw new WasiErrno(ERRNO.BADF);
    engine = new WasiFs(fs, fsIo);
    return engine;
  };
  const table = new FdTable(
    fs === undefined ? stdioEntries() : [...stdioEntries(), WasiFs.preopen(fs)],
    (entry) => engine?.close(entry),
  );
  if (fs !== undefined) {
    if (io.atDrop === undefined)
      throw new Error('a WASI filesystem needs WasiIo.atDrop to close its descriptors');
    io.atDrop(() => {
      table.closeAll();
      engine?.release();
    });
  }

  /** Runs a filesystem call: its refusals (WasiErrno) and the host's errors (HostErrno) become the errno answered. */
  // biome-ignore lint/suspicious/noConfusingVoidType: most calls answer SUCCESS by returning nothing
  const attempt = (run: () => number | void): number => {
    try {
      return run() ?? ERRNO.SUCCESS;
    } catch (error) {
      // A refusal costs its throw and catch, whatever the import's own price (FUEL_PER_REFUSAL).
      if (error instanceof WasiErrno || error instanceof HostErrno) io.charge(FUEL_PER_REFUSAL);
      if (error instanceof WasiErrno) return error.errno;
      if (error instanceof HostErrno) {
        // A full file system (its tenant's filesystem_bytes: a file system of its own) is the guest's quota too:
        // EDQUOT, as for limits.disk_mb, and the runtime is told (a call that then fails answers filesystem_full).
        if (Math.abs(error.errno) === ENOSPC) {
          io.quotaExceeded?.('filesystem', 0);
          return ERRNO.DQUOT;
        }
        return wasiErrno(error.errno);
      }
      throw error;
    }
  };
  const hostEntry = (fd: number): FdEntry => {
    const entry = table.need(fd);
    if (entry.kind !== 'file' && entry.kind !== 'dir') throw new WasiErrno(ERRNO.SPIPE);
    return entry;
  };
  /** A path argument, copied out of guest memory (charged), or ENAMETOOLONG before it is read. */
  const path = (ptr: number, len: number): Uint8Array => {
    if (len >>> 0 > MAX_PATH_BYTES) throw new WasiErrno(ERRNO.NAMETOOLONG);
    io.charge((len >>> 0) * FUEL_PER_BYTE);
    return Buffer.from(region(ptr, len));
  };
  const sizes = (list: Uint8Array[]) => (countPtr: number, sizePtr: number) => {
    const v = view();
    v.setUint32(countPtr >>> 0, list.length, true);
    v.setUint32(
      sizePtr >>> 0,
      list.reduce((n, b) => n + b.length, 0),
      true,
    );
    return ERRNO.SUCCESS;
  };
  const fill = (list: Uint8Array[]) => (ptrsPtr: number, bufPtr: number) => {
    io.charge(list.reduce((n, b) => n + b.length + 4, 0) * FUEL_PER_BYTE);
    const v = view();
    const b = bytes();
    let at = bufPtr >>> 0;
    list.forEach((item, i) => {
      v.setUint32((ptrsPtr >>> 0) + i * 4, at, true);
      if (at + item.length > b.length) throw new RangeError('out of bounds');
      b.set(item, at);
      at += item.length;
    });
    return ERRNO.SUCCESS;
  };
  /** The iovecs at `iovs` as views of guest memory, charged and bounds-checked before any is used. */
  const iovecs = (iovs: number, count: number): Uint8Array[] => {
    if (count >>> 0 > MAX_IOVECS) throw new WasiErrno(ERRNO.INVAL);
    io.charge((count >>> 0) * FUEL_PER_IOVEC);
    const v = view();
    // One view of the memory for all of them (region() makes one per call: twice the objects an iovec).
    const b = bytes();
    const out: Uint8Array[] = [];
    for (let i = 0; i < count >>> 0; i++) {
      const ptr = v.getUint32((iovs >>> 0) + i * 8, true);
      const len = v.getUint32((iovs >>> 0) + i * 8 + 4, true);
      if (ptr + len > b.length) throw new RangeError('out of bounds');
      out.push(b.subarray(ptr, ptr + len));
    }
    return out;
  };
  const writeStream = (entry: FdEntry, chunks: Uint8Array[]): number => {
    let written = 0;
    for (const chunk of chunks) {
      io.charge(chunk.length * FUEL_PER_BYTE);
      if (entry.kind === 'stdout') io.stdout(chunk);
      else io.stderr(chunk);
      written += chunk.length;
    }
    return written;
  };
  const readStdin = (views: Uint8Array[]): number => {
    let read = 0;
    for (const target of views) {
      const chunk = io.stdin(target.length);
      io.charge(chunk.length * FUEL_PER_BYTE);
      target.set(chunk);
      read += chunk.length;
      if (chunk.length < target.length) break;
    }
    return read;
  };
  const sleep =
    io.sleep ??
    ((untilNs: bigint) => {
      const ms = Number(untilNs - monotonicNs()) / 1e6;
      if (ms > 0) Atomics.wait(SLEEPER, 0, 0, Math.min(ms, DEFAULT_SLEEP_CAP_MS));
    });
  const filestat = (ptr: number, s: Filestat) => {
    const v = view();
    const p = ptr >>> 0;
    region(p, 64).fill(0);
    v.setBigUint64(p, s.dev, true);
    v.setBigUint64(p + 8, s.ino, true);
    v.setUint8(p + 16, s.filetype);
    v.setBigUint64(p + 24, s.nlink, true);
    v.setBigUint64(p + 32, s.size, true);
    v.setBigUint64(p + 40, s.atim, true);
    v.setBigUint64(p + 48, s.mtim, true);
    v.setBigUint64(p + 56, s.ctim, true);
  };
  const isStream = (entry: FdEntry) =>
    entry.kind === 'stdin' || entry.kind === 'stdout' || entry.kind === 'stderr';
  const notSocket = (fd: number) =>
    attempt(() => {
      table.need(fd); // EBADF for a descriptor that is not open
      return ERRNO.NOTSOCK;
    });

  const impl: Record<string, (...a: never[]) => number | undefined> = {
    args_sizes_get: sizes(argBytes),
    args_get: fill(argBytes),
    environ_sizes_get: sizes(envBytes),
    environ_get: fill(envBytes),
    clock_res_get: (id: number, resPtr: number) => {
      if (id > CLOCK.THREAD_CPUTIME) return ERRNO.INVAL;
      view().setBigUint64(resPtr >>> 0, id === CLOCK.REALTIME ? 1_000_000n : 1_000n, true);
      return ERRNO.SUCCESS;
    },
    clock_time_get: (id: number, _precision: bigint, timePtr: number) => {
      let ns: bigint;
      if (id === CLOCK.REALTIME) ns = realtimeNs();
      else if (id === CLOCK.MONOTONIC) ns = monotonicNs();
      else if (id === CLOCK.PROCESS_CPUTIME || id === CLOCK.THREAD_CPUTIME) {
        const used = process.cpuUsage();
        ns = BigInt(used.user + used.system) * 1_000n;
      } else return ERRNO.INVAL;
      view().setBigUint64(timePtr >>> 0, ns, true);
      return ERRNO.SUCCESS;
    },
    fd_write: (fd: number, iovs: number, count: number, writtenPtr: number) => {
      const entry = table.get(fd);
      // The hot path (stdout and stderr): no closure, no filesystem.
      if (
        entry !== undefined &&
        (entry.kind === 'stdout' || entry.kind === 'stderr') &&
        entry.base & RIGHT.FD_WRITE
      ) {
        if (count >>> 0 > MAX_IOVECS) return ERRNO.INVAL;
        view().setUint32(writtenPtr >>> 0, writeStream(entry, iovecs(iovs, count)), true);
        return ERRNO.SUCCESS;
      }
      return attempt(() => {
        const e = table.need(fd);
        if (e.kind === 'stdin' || !(e.base & RIGHT.FD_WRITE))
          return e.kind === 'stdin' ? ERRNO.BADF : ERRNO.NOTCAPABLE;
        const n =
          e.kind === 'file' || e.kind === 'dir' ? files().write(e, iovecs(iovs, count), undefined) : 0;
        view().setUint32(writtenPtr >>> 0, n, true);
      });
    },
    fd_read: (fd: number, iovs: number, count: number, readPtr: number) =>
      attempt(() => {
        const e = table.need(fd);
        if (e.kind === 'stdout' || e.kind === 'stderr') return ERRNO.BADF;
        const list = iovecs(iovs, count);
        let n: number;
        if (e.kind === 'stdin') {
          if (!(e.base & RIGHT.FD_READ)) return ERRNO.NOTCAPABLE;
          n = readStdin(list);
        } else n = files().read(e, list, undefined);
        view().setUint32(readPtr >>> 0, n, true);
      }),
    fd_pread: (fd: number, iovs: number, count: number, offset: bigint, readPtr: number) =>
      attempt(() => {
        const n = files().read(hostEntry(fd), iovecs(iovs, count), offset);
        view().setUint32(readPtr >>> 0, n, true);
      }),
    fd_pwrite: (fd: number, iovs: number, count: number, offset: bigint, writtenPtr: number) =>
      attempt(() => {
        const n = files().write(hostEntry(fd), iovecs(iovs, count), offset);
        view().setUint32(writtenPtr >>> 0, n, true);
      }),
    fd_fdstat_get: (fd: number, statPtr: number) =>
      attempt(() => {
        const e = table.need(fd);
        const v = view();
        const p = statPtr >>> 0;
        region(p, 24).fill(0);
        v.setUint8(p, e.filetype);
        v.setUint16(p + 2, e.flags, true);
        v.setBigUint64(p + 8, BigInt(e.base), true);
        v.setBigUint64(p + 16, BigInt(e.inheriting), true);
      }),
    fd_fdstat_set_flags: (fd: number, flags: number) =>
      attempt(() => {
        const e = table.need(fd);
        if (!isStream(e)) {
          files().setFlags(e, flags & 0xffff);
          return ERRNO.SUCCESS;
        }
        if (!(e.base & RIGHT.FD_FDSTAT_SET_FLAGS)) return ERRNO.NOTCAPABLE;
        e.flags = flags & 0x1f;
      }),
    fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) =>
      attempt(() => {
        const e = table.need(fd);
        // Rights may only shrink: asking for one the descriptor does not hold (or an unknown bit) is ENOTCAPABLE.
        if ((base & ~BigInt(e.base)) !== 0n || (inheriting & ~BigInt(e.inheriting)) !== 0n)
          return ERRNO.NOTCAPABLE;
        e.base = Number(base);
        e.inheriting = Number(inheriting);
      }),
    fd_filestat_get: (fd: number, statPtr: number) =>
      attempt(() => {
        const e = table.need(fd);
        if (isStream(e)) {
          if (!(e.base & RIGHT.FD_FILESTAT_GET)) return ERRNO.NOTCAPABLE;
          filestat(statPtr, {
            dev: 0n,
            ino: 0n,
            filetype: FILETYPE.CHARACTER_DEVICE,
            nlink: 1n,
            size: 0n,
            atim: 0n,
            mtim: 0n,
            ctim: 0n,
          });
          return ERRNO.SUCCESS;
        }
        filestat(statPtr, files().filestat(e));
      }),
    fd_filestat_set_size: (fd: number, size: bigint) =>
      attempt(() => files().setSize(hostOrRights(fd, RIGHT.FD_FILESTAT_SET_SIZE), size)),
    fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, flags: number) =>
      attempt(() => files().setTimes(hostOrRights(fd, RIGHT.FD_FILESTAT_SET_TIMES), atim, mtim, flags)),
    fd_advise: (fd: number, offset: bigint, len: bigint, advice: number) =>
      attempt(() => files().advise(hostOrRights(fd, RIGHT.FD_ADVISE), offset, len, advice)),
    fd_allocate: (fd: number, offset: bigint, len: bigint) =>
      attempt(() => files().allocate(hostOrRights(fd, RIGHT.FD_ALLOCATE), offset, len)),
    fd_sync: (fd: number) => attempt(() => files().sync(hostOrRights(fd, RIGHT.FD_SYNC), false)),
    fd_datasync: (fd: number) => attempt(() => files().sync(hostOrRights(fd, RIGHT.FD_DATASYNC), true)),
    fd_seek: (fd: number, offset: bigint, whence: number, resultPtr: number) =>
      attempt(() => {
        const e = table.need(fd);
        if (isStream(e)) return ERRNO.SPIPE;
        const at = files().seek(e, offset, whence);
        view().setBigUint64(resultPtr >>> 0, at, true);
      }),
    fd_tell: (fd: number, resultPtr: number) =>
      attempt(() => {
        const e = table.need(fd);
        if (isStream(e)) return ERRNO.SPIPE;
        view().setBigUint64(resultPtr >>> 0, files().seek(e, 0n, 1), true);
      }),
    fd_close: (fd: number) => attempt(() => table.close(fd)),
    fd_renumber: (from: number, to: number) => attempt(() => table.renumber(from, to)),
    fd_readdir: (fd: number, buf: number, len: number, cookie: bigint, usedPtr: number) =>
      attempt(() => {
        const out = region(buf, len);
        const used = files().readdir(hostOrRights(fd, RIGHT.FD_READDIR), out, cookie);
        view().setUint32(usedPtr >>> 0, used, true);
      }),
    fd_prestat_get: (fd: number, prestatPtr: number) =>
      attempt(() => {
        const name = table.get(fd)?.preopen;
        if (name === undefined) return ERRNO.BADF;
        const v = view();
        region(prestatPtr, 8).fill(0);
        v.setUint8(prestatPtr >>> 0, 0); // preopentype dir
        v.setUint32((prestatPtr >>> 0) + 4, name.length, true);
      }),
    fd_prestat_dir_name: (fd: number, ptr: number, len: number) =>
      attempt(() => {
        const name = table.get(fd)?.preopen;
        if (name === undefined) return ERRNO.BADF;
        if (len >>> 0 < name.length) return ERRNO.NAMETOOLONG;
        region(ptr, name.length).set(name);
      }),
    path_create_directory: (fd: number, ptr: number, len: number) =>
      attempt(() => files().createDirectory(dirEntry(fd), path(ptr, len))),
    path_filestat_get: (fd: number, flags: number, ptr: number, len: number, statPtr: number) =>
      attempt(() => filestat(statPtr, files().pathFilestat(dirEntry(fd), flags, path(ptr, len)))),
    path_filestat_set_times: (
      fd: number,
      flags: number,
      ptr: number,
      len: number,
      atim: bigint,
      mtim: bigint,
      fst: number,
    ) => attempt(() => files().pathSetTimes(dirEntry(fd), flags, path(ptr, len), atim, mtim, fst)),
    path_link: (
      oldFd: number,
      flags: number,
      oldPtr: number,
      oldLen: number,
      newFd: number,
      newPtr: number,
      newLen: number,
    ) =>
      attempt(() =>
        files().link(dirEntry(oldFd), flags, path(oldPtr, oldLen), dirEntry(newFd), path(newPtr, newLen)),
      ),
    path_open: (
      fd: number,
      lookup: number,
      ptr: number,
      len: number,
      oflags: number,
      base: bigint,
      inheriting: bigint,
      fdflags: number,
      fdPtr: number,
    ) =>
      attempt(() => {
        const dir = dirEntry(fd);
        const name = path(ptr, len);
        region(fdPtr, 4);
        table.reserve();
        const entry = files().open(dir, lookup, name, oflags, base, inheriting, fdflags);
        view().setUint32(fdPtr >>> 0, table.add(entry), true);
      }),
    path_readlink: (fd: number, ptr: number, len: number, buf: number, bufLen: number, usedPtr: number) =>
      attempt(() => {
        const out = region(buf, bufLen);
        const target = files().readlink(dirEntry(fd), path(ptr, len));
        const n = Math.min(target.length, out.length);
        out.set(target.subarray(0, n));
        view().setUint32(usedPtr >>> 0, n, true);
      }),
    path_remove_directory: (fd: number, ptr: number, len: number) =>
      attempt(() => files().removeDirectory(dirEntry(fd), path(ptr, len))),
    path_rename: (
      oldFd: number,
      oldPtr: number,
      oldLen: number,
      newFd: number,
      newPtr: number,
      newLen: number,
    ) =>
      attempt(() =>
        files().rename(dirEntry(oldFd), path(oldPtr, oldLen), dirEntry(newFd), path(newPtr, newLen)),
      ),
    path_symlink: (oldPtr: number, oldLen: number, fd: number, newPtr: number, newLen: number) =>
      attempt(() => files().symlink(path(oldPtr, oldLen), dirEntry(fd), path(newPtr, newLen))),
    path_unlink_file: (fd: number, ptr: number, len: number) =>
      attempt(() => files().unlinkFile(dirEntry(fd), path(ptr, len))),
    poll_oneoff: (inPtr: number, outPtr: number, count: number, countPtr: number) =>
      attempt(() =>
        pollOneoff(
          {
            view,
            region,
            charge: (fuel) => io.charge(fuel),
            entry: (fd) => table.get(fd),
            readable: (entry) =>
              entry.kind === 'stdin'
                ? BigInt(io.stdinLeft?.() ?? 0)
                : entry.kind === 'file'
                  ? files().readable(entry)
                  : 0n,
            sleep,
          },
          inPtr,
          outPtr,
          count,
          countPtr,
        ),
      ),
    proc_exit: (status: number) => {
      throw new WasiExit(status >>> 0);
    },
    proc_raise: (signal: number) => {
      if (signal >>> 0 > 30) return ERRNO.INVAL;
      if (IGNORED_SIGNALS.has(signal >>> 0)) return ERRNO.SUCCESS;
      // The default action of every other signal ends the process, as a shell reports it: 128 + the signal.
      throw new WasiExit(128 + (signal >>> 0));
    },
    sched_yield: () => ERRNO.SUCCESS,
    random_get: (ptr: number, len: number) => {
      const b = bytes();
      if ((ptr >>> 0) + (len >>> 0) > b.length) throw new RangeError('out of bounds');
      io.charge((len >>> 0) * FUEL_PER_RANDOM_BYTE);
      randomFillSync(b, ptr >>> 0, len >>> 0);
      return ERRNO.SUCCESS;
    },
    sock_accept: (fd: number) => notSocket(fd),
    sock_recv: (fd: number) => notSocket(fd),
    sock_send: (fd: number) => notSocket(fd),
    sock_shutdown: (fd: number) => notSocket(fd),
  };

  /** A descriptor for a call needing `right`: a stream lacks it (ENOTCAPABLE), a closed one is EBADF. */
  function hostOrRights(fd: number, right: number): FdEntry {
    const entry = table.need(fd);
    if (isStream(entry)) throw new WasiErrno((entry.base & right) === right ? ERRNO.SPIPE : ERRNO.NOTCAPABLE);
    return entry;
  }
  /** The directory a path call starts from: a stream is ENOTDIR, a closed descriptor EBADF. */
  function dirEntry(fd: number): FdEntry {
    const entry = table.need(fd);
    if (isStream(entry)) throw new WasiErrno(ERRNO.NOTDIR);
    return entry;
  }
  return impl;
}
