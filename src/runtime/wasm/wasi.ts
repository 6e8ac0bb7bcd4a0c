import { randomFillSync } from 'node:crypto';
import { FUEL_PER_BYTE, FUEL_PER_IOVEC, FUEL_PER_RANDOM_BYTE, MAX_IOVECS } from './abi.js';

/**
 * A WASI preview1 for plugins, in process, with no filesystem at all: stdin is the call's input (command
 * modules) or empty, stdout and stderr go to sinks the runtime chooses (the plugin's output or log), args and
 * environment are only what the manifest sets, clocks and randomness are allowed, and every path, socket and
 * other descriptor call answers ENOSYS/EBADF. We do not use `node:wasi`: it can only send stdio to real file
 * descriptors, and Node's docs say it is not a filesystem security boundary.
 */
export const WASI_MODULE = 'wasi_snapshot_preview1';

const ERRNO = { SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28, NOSYS: 52, SPIPE: 70 } as const;

/** Thrown by `proc_exit`; the runtime turns it into a status. */
export class WasiExit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

export interface WasiIo {
  /** Reads up to `max` bytes of stdin. */
  stdin(max: number): Uint8Array;
  /** `bytes` is a view of guest memory, valid only during the call: keep a copy. */
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
  /**
   * Charges `fuel` for work about to be done, and throws (fuel, deadline) when the call may not do it. Called
   * before every piece of work proportional to a plugin-chosen size, so no call does unbounded work unpaid.
   */
  charge(fuel: number): void;
}

/** Every preview1 function; those without an implementation below answer ENOSYS. */
const PREVIEW1 = [
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
] as const;

export const WASI_FUNCTIONS: ReadonlySet<string> = new Set(PREVIEW1);

/**
 * The import object for `wasi_snapshot_preview1`. `memory()` returns the guest memory (it can be replaced by
 * growth), and each pointer is bounds-checked by DataView/Uint8Array, whose RangeError the runtime reports as
 * `wasm_out_of_bounds`. Long because it is a table of the import functions, each a few lines over the same memory
 * accessors and fuel charge defined at its top; split, each piece would need them all passed in.
 */
export function wasiImports(
  args: readonly string[],
  env: Readonly<Record<string, string>>,
  memory: () => WebAssembly.Memory,
  io: WasiIo,
): Record<string, (...a: never[]) => number | undefined> {
  const enc = new TextEncoder();
  const argBytes = args.map((a) => enc.encode(`${a}\0`));
  const envBytes = Object.entries(env).map(([k, v]) => enc.encode(`${k}=${v}\0`));
  const view = () => new DataView(memory().buffer);
  const bytes = () => new Uint8Array(memory().buffer);
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
  /** The iovecs at `iovs`, charged before they are walked; undefined (EINVAL) past MAX_IOVECS. */
  const iovecs = (iovs: number, count: number): [number, number][] | undefined => {
    if (count >>> 0 > MAX_IOVECS) return undefined;
    io.charge((count >>> 0) * FUEL_PER_IOVEC);
    const v = view();
    const out: [number, number][] = [];
    for (let i = 0; i < count >>> 0; i++) {
      const ptr = v.getUint32((iovs >>> 0) + i * 8, true);
      const len = v.getUint32((iovs >>> 0) + i * 8 + 4, true);
      out.push([ptr, len]);
    }
    return out;
  };
  const region = (ptr: number, len: number) => {
    const b = bytes();
    if (ptr + len > b.length) throw new RangeError('out of bounds');
    return b.subarray(ptr, ptr + len);
  };

  const impl: Record<string, (...a: never[]) => number | undefined> = {};
  for (const name of PREVIEW1) impl[name] = () => ERRNO.NOSYS;
  Object.assign(impl, {
    args_sizes_get: sizes(argBytes),
    args_get: fill(argBytes),
    environ_sizes_get: sizes(envBytes),
    environ_get: fill(envBytes),
    clock_res_get: (_id: number, resPtr: number) => {
      view().setBigUint64(resPtr >>> 0, 1_000n, true);
      return ERRNO.SUCCESS;
    },
    clock_time_get: (id: number, _precision: bigint, timePtr: number) => {
      const ns = id === 0 ? BigInt(Date.now()) * 1_000_000n : process.hrtime.bigint();
      view().setBigUint64(timePtr >>> 0, ns, true);
      return ERRNO.SUCCESS;
    },
    fd_write: (fd: number, iovs: number, count: number, writtenPtr: number) => {
      if (fd !== 1 && fd !== 2) return ERRNO.BADF;
      const list = iovecs(iovs, count);
      if (list === undefined) return ERRNO.INVAL;
      let written = 0;
      for (const [ptr, len] of list) {
        const chunk = region(ptr, len);
        io.charge(len * FUEL_PER_BYTE);
        if (fd === 1) io.stdout(chunk);
        else io.stderr(chunk);
        written += len;
      }
      view().setUint32(writtenPtr >>> 0, written, true);
      return ERRNO.SUCCESS;
    },
    fd_read: (fd: number, iovs: number, count: number, readPtr: number) => {
      if (fd !== 0) return ERRNO.BADF;
      const list = iovecs(iovs, count);
      if (list === undefined) return ERRNO.INVAL;
      let read = 0;
      for (const [ptr, len] of list) {
        const chunk = io.stdin(len);
        io.charge(chunk.length * FUEL_PER_BYTE);
        const b = bytes();
        if (ptr + chunk.length > b.length) throw new RangeError('out of bounds');
        b.set(chunk, ptr);
        read += chunk.length;
        if (chunk.length < len) break;
      }
      view().setUint32(readPtr >>> 0, read, true);
      return ERRNO.SUCCESS;
    },
    fd_fdstat_get: (fd: number, statPtr: number) => {
      if (fd > 2) return ERRNO.BADF;
      const v = view();
      v.setUint8(statPtr >>> 0, 2); // character device
      v.setUint16((statPtr >>> 0) + 2, 0, true);
      v.setBigUint64((statPtr >>> 0) + 8, fd === 0 ? 2n : 64n, true); // fd_read | fd_write
      v.setBigUint64((statPtr >>> 0) + 16, 0n, true);
      return ERRNO.SUCCESS;
    },
    fd_close: (fd: number) => (fd <= 2 ? ERRNO.SUCCESS : ERRNO.BADF),
    fd_seek: (fd: number) => (fd <= 2 ? ERRNO.SPIPE : ERRNO.BADF),
    fd_tell: (fd: number) => (fd <= 2 ? ERRNO.SPIPE : ERRNO.BADF),
    fd_prestat_get: () => ERRNO.BADF, // no preopened directories: no filesystem
    fd_prestat_dir_name: () => ERRNO.BADF,
    proc_exit: (status: number) => {
      throw new WasiExit(status >>> 0);
    },
    sched_yield: () => ERRNO.SUCCESS,
    random_get: (ptr: number, len: number) => {
      const b = bytes();
      if ((ptr >>> 0) + (len >>> 0) > b.length) throw new RangeError('out of bounds');
      io.charge((len >>> 0) * FUEL_PER_RANDOM_BYTE);
      randomFillSync(b, ptr >>> 0, len >>> 0);
      return ERRNO.SUCCESS;
    },
  });
  return impl;
}
