import { constants } from 'node:os';

// The numbers of WASI preview1 (legacy/preview1/witx/typenames.witx in WebAssembly/WASI), as the guest sees them.

export const ERRNO = {
  SUCCESS: 0,
  '2BIG': 1,
  ACCES: 2,
  AGAIN: 6,
  BADF: 8,
  DQUOT: 19,
  EXIST: 20,
  FAULT: 21,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  LOOP: 32,
  MFILE: 33,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOSYS: 52,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSOCK: 57,
  NOTSUP: 58,
  OVERFLOW: 61,
  PERM: 63,
  ROFS: 69,
  SPIPE: 70,
  XDEV: 75,
  NOTCAPABLE: 76,
} as const;

export const FILETYPE = {
  UNKNOWN: 0,
  BLOCK_DEVICE: 1,
  CHARACTER_DEVICE: 2,
  DIRECTORY: 3,
  REGULAR_FILE: 4,
  SOCKET_STREAM: 6,
  SYMBOLIC_LINK: 7,
} as const;

/** Rights (all below bit 30, so plain numbers and 32-bit bitwise operations hold them). */
export const RIGHT = {
  FD_DATASYNC: 1 << 0,
  FD_READ: 1 << 1,
  FD_SEEK: 1 << 2,
  FD_FDSTAT_SET_FLAGS: 1 << 3,
  FD_SYNC: 1 << 4,
  FD_TELL: 1 << 5,
  FD_WRITE: 1 << 6,
  FD_ADVISE: 1 << 7,
  FD_ALLOCATE: 1 << 8,
  PATH_CREATE_DIRECTORY: 1 << 9,
  PATH_CREATE_FILE: 1 << 10,
  PATH_LINK_SOURCE: 1 << 11,
  PATH_LINK_TARGET: 1 << 12,
  PATH_OPEN: 1 << 13,
  FD_READDIR: 1 << 14,
  PATH_READLINK: 1 << 15,
  PATH_RENAME_SOURCE: 1 << 16,
  PATH_RENAME_TARGET: 1 << 17,
  PATH_FILESTAT_GET: 1 << 18,
  PATH_FILESTAT_SET_SIZE: 1 << 19,
  PATH_FILESTAT_SET_TIMES: 1 << 20,
  FD_FILESTAT_GET: 1 << 21,
  FD_FILESTAT_SET_SIZE: 1 << 22,
  FD_FILESTAT_SET_TIMES: 1 << 23,
  PATH_SYMLINK: 1 << 24,
  PATH_REMOVE_DIRECTORY: 1 << 25,
  PATH_UNLINK_FILE: 1 << 26,
  POLL_FD_READWRITE: 1 << 27,
  SOCK_SHUTDOWN: 1 << 28,
  SOCK_ACCEPT: 1 << 29,
} as const;

/** Every right a regular file's descriptor can hold. */
export const FILE_RIGHTS =
  RIGHT.FD_DATASYNC |
  RIGHT.FD_READ |
  RIGHT.FD_SEEK |
  RIGHT.FD_FDSTAT_SET_FLAGS |
  RIGHT.FD_SYNC |
  RIGHT.FD_TELL |
  RIGHT.FD_WRITE |
  RIGHT.FD_ADVISE |
  RIGHT.FD_ALLOCATE |
  RIGHT.FD_FILESTAT_GET |
  RIGHT.FD_FILESTAT_SET_SIZE |
  RIGHT.FD_FILESTAT_SET_TIMES |
  RIGHT.POLL_FD_READWRITE;

/**
 * Every right a directory's descriptor can hold (no seek, read, write, datasync, allocate or size: those are a
 * file's, and path_open takes any of the write ones as asking to open for writing).
 */
export const DIR_RIGHTS =
  RIGHT.FD_FDSTAT_SET_FLAGS |
  RIGHT.FD_SYNC |
  RIGHT.PATH_CREATE_DIRECTORY |
  RIGHT.PATH_CREATE_FILE |
  RIGHT.PATH_LINK_SOURCE |
  RIGHT.PATH_LINK_TARGET |
  RIGHT.PATH_OPEN |
  RIGHT.FD_READDIR |
  RIGHT.PATH_READLINK |
  RIGHT.PATH_RENAME_SOURCE |
  RIGHT.PATH_RENAME_TARGET |
  RIGHT.PATH_FILESTAT_GET |
  RIGHT.PATH_FILESTAT_SET_SIZE |
  RIGHT.PATH_FILESTAT_SET_TIMES |
  RIGHT.FD_FILESTAT_GET |
  RIGHT.FD_FILESTAT_SET_TIMES |
  RIGHT.PATH_SYMLINK |
  RIGHT.PATH_REMOVE_DIRECTORY |
  RIGHT.PATH_UNLINK_FILE;

export const ALL_RIGHTS = FILE_RIGHTS | DIR_RIGHTS;

/** stdin, stdout and stderr: a stream each way, its flags and its status. */
export const STDIN_RIGHTS =
  RIGHT.FD_READ | RIGHT.FD_FDSTAT_SET_FLAGS | RIGHT.FD_FILESTAT_GET | RIGHT.POLL_FD_READWRITE;
export const STDOUT_RIGHTS =
  RIGHT.FD_WRITE | RIGHT.FD_FDSTAT_SET_FLAGS | RIGHT.FD_FILESTAT_GET | RIGHT.POLL_FD_READWRITE;

export const FDFLAG = { APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16 } as const;
export const OFLAG = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
export const LOOKUP_SYMLINK_FOLLOW = 1;
export const FSTFLAG = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8 } as const;
export const WHENCE = { SET: 0, CUR: 1, END: 2 } as const;
export const EVENTTYPE = { CLOCK: 0, FD_READ: 1, FD_WRITE: 2 } as const;
export const SUBCLOCK_ABSTIME = 1;
export const CLOCK = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3 } as const;

/** A Linux errno (what libc and Node's fs report) as the WASI errno for it; anything unlisted is EIO. */
const BY_NAME: Readonly<Record<string, number>> = {
  E2BIG: 1,
  EACCES: 2,
  EADDRINUSE: 3,
  EADDRNOTAVAIL: 4,
  EAFNOSUPPORT: 5,
  EAGAIN: 6,
  EALREADY: 7,
  EBADF: 8,
  EBADMSG: 9,
  EBUSY: 10,
  ECANCELED: 11,
  ECHILD: 12,
  ECONNABORTED: 13,
  ECONNREFUSED: 14,
  ECONNRESET: 15,
  EDEADLK: 16,
  EDESTADDRREQ: 17,
  EDOM: 18,
  EDQUOT: 19,
  EEXIST: 20,
  EFAULT: 21,
  EFBIG: 22,
  EHOSTUNREACH: 23,
  EIDRM: 24,
  EILSEQ: 25,
  EINPROGRESS: 26,
  EINTR: 27,
  EINVAL: 28,
  EIO: 29,
  EISCONN: 30,
  EISDIR: 31,
  ELOOP: 32,
  EMFILE: 33,
  EMLINK: 34,
  EMSGSIZE: 35,
  EMULTIHOP: 36,
  ENAMETOOLONG: 37,
  ENETDOWN: 38,
  ENETRESET: 39,
  ENETUNREACH: 40,
  ENFILE: 41,
  ENOBUFS: 42,
  ENODEV: 43,
  ENOENT: 44,
  ENOEXEC: 45,
  ENOLCK: 46,
  ENOLINK: 47,
  ENOMEM: 48,
  ENOMSG: 49,
  ENOPROTOOPT: 50,
  ENOSPC: 51,
  ENOSYS: 52,
  ENOTCONN: 53,
  ENOTDIR: 54,
  ENOTEMPTY: 55,
  ENOTRECOVERABLE: 56,
  ENOTSOCK: 57,
  ENOTSUP: 58,
  EOPNOTSUPP: 58,
  ENOTTY: 59,
  ENXIO: 60,
  EOVERFLOW: 61,
  EOWNERDEAD: 62,
  EPERM: 63,
  EPIPE: 64,
  EPROTO: 65,
  EPROTONOSUPPORT: 66,
  EPROTOTYPE: 67,
  ERANGE: 68,
  EROFS: 69,
  ESPIPE: 70,
  ESRCH: 71,
  ESTALE: 72,
  ETIMEDOUT: 73,
  ETXTBSY: 74,
  EXDEV: 75,
};

const BY_NUMBER = new Map<number, number>();
for (const [name, wasi] of Object.entries(BY_NAME)) {
  const host = (constants.errno as Record<string, number | undefined>)[name];
  if (host !== undefined && !BY_NUMBER.has(host)) BY_NUMBER.set(host, wasi);
}

export function wasiErrno(hostErrno: number): number {
  return BY_NUMBER.get(Math.abs(hostErrno)) ?? ERRNO.IO;
}

/**
 * A host error number, raised by the filesystem engine and answered to the guest as its WASI errno. Not an Error:
 * see WasiErrno.
 */
export class HostErrno {
  constructor(readonly errno: number) {}

  get message(): string {
    return `errno ${this.errno}`;
  }
}

/**
 * A WASI errno raised by the engine itself (a right missing, a quota, a refusal), answered as it is. Like HostErrno,
 * not an Error: each is thrown and caught inside the engine at a failed call, and an Error's stack trace cost more
 * than the call's system call (a path that does not exist, asked in a loop: 11-20 µs a call, most of it stacks).
 */
export class WasiErrno {
  constructor(readonly errno: number) {}

  get message(): string {
    return `wasi errno ${this.errno}`;
  }
}
