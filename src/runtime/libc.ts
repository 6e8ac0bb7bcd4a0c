// The C library through koffi (already a dependency), loaded once per process, for the calls Node does not have:
// openat2 and the other *at calls the WASI filesystem resolves paths with (src/runtime/wasm/wasi-fs.ts), the
// descriptor walk of the one delete (src/backends/shared/safe-remove.ts), and fcntl (fd-hygiene.ts). Here, in
// runtime/, because the sandbox-runner loads the WASI filesystem without the host side, and backends/ may import
// runtime/ but not the other way round (the layers in .dependency-cruiser.cjs).
import { createRequire } from 'node:module';
import type { LibraryHandle } from 'koffi';

type Fn = ReturnType<LibraryHandle['func']>;
type Koffi = typeof import('koffi').default;

// koffi is loaded on first use, not with this module: it costs 15-30 ms, and every WASM runtime imports this module
// (through WASI) while only plugins that touch a file need it.
let koffiModule: Koffi | undefined;
const koffi = (): Koffi => {
  koffiModule ??= createRequire(import.meta.url)('koffi') as Koffi;
  return koffiModule;
};

let handle: LibraryHandle | undefined;

/** The C library, loaded once for the whole process. */
export function libcHandle(): LibraryHandle {
  handle ??= koffi().load('libc.so.6');
  return handle;
}

/** errno of the last libc call made through koffi on this thread. */
export const lastErrno = (): number => koffi().errno();

/** The system call number of openat2(2): the same on every Linux architecture (the unified table from 5.6). */
export const SYS_OPENAT2 = 437;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;
export const O_PATH = 0o10000000;
export const O_CLOEXEC = 0o2000000;
export const O_NOFOLLOW = 0o400000;
export const O_DIRECTORY = 0o200000;
export const O_NONBLOCK = 0o4000;
export const O_APPEND = 0o2000;
export const O_DSYNC = 0o10000;
export const O_SYNC = 0o4010000;
export const O_NOCTTY = 0o400;
/** flock(2)'s operations. */
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_BENEATH = 0x08;
export const STATX_BASIC_STATS = 0x7ff;
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
export const F_GETFL = 3;
export const F_SETFL = 4;

/** The *at calls and friends, bound on first use. Paths are NUL-terminated byte buffers (names need not be UTF-8). */
export interface Libc {
  /** syscall(2) with openat2's four arguments (dirfd, path, struct open_how, its size). */
  openat2: Fn;
  openat: Fn;
  mkdirat: Fn;
  unlinkat: Fn;
  renameat: Fn;
  linkat: Fn;
  symlinkat: Fn;
  readlinkat: Fn;
  statx: Fn;
  utimensat: Fn;
  /** utimensat on the descriptor itself (glibc's utimensat refuses a NULL path). */
  futimens: Fn;
  fcntl: Fn;
  lseek: Fn;
  getdents64: Fn;
  ftruncate: Fn;
  fsync: Fn;
  fdatasync: Fn;
  /** Node's fchmodSync is refused under its permission model, which process-mode runners run with. */
  fchmod: Fn;
  posixFallocate: Fn;
  close: Fn;
  dup: Fn;
  fdopendir: Fn;
  flock: Fn;
  readdir: Fn;
  closedir: Fn;
}

let libc: Libc | undefined;

export function loadLibc(): Libc {
  if (libc !== undefined) return libc;
  const f = (decl: string) => libcHandle().func(decl);
  libc = {
    // syscall is variadic in C; on x86-64 and arm64 Linux integer and pointer arguments travel in the same
    // registers either way, and glibc's syscall() reads them as such.
    openat2: f('long syscall(long nr, int dirfd, const uint8_t *path, const uint8_t *how, size_t size)'),
    openat: f('int openat(int dirfd, const uint8_t *path, int flags, unsigned int mode)'),
    mkdirat: f('int mkdirat(int dirfd, const uint8_t *path, unsigned int mode)'),
    unlinkat: f('int unlinkat(int dirfd, const uint8_t *path, int flags)'),
    renameat: f('int renameat(int olddirfd, const uint8_t *oldpath, int newdirfd, const uint8_t *newpath)'),
    linkat: f(
      'int linkat(int olddirfd, const uint8_t *oldpath, int newdirfd, const uint8_t *newpath, int flags)',
    ),
    symlinkat: f('int symlinkat(const uint8_t *target, int newdirfd, const uint8_t *linkpath)'),
    readlinkat: f('long readlinkat(int dirfd, const uint8_t *path, _Out_ uint8_t *buf, size_t size)'),
    statx: f('int statx(int dirfd, const uint8_t *path, int flags, unsigned int mask, _Out_ uint8_t *buf)'),
    utimensat: f('int utimensat(int dirfd, const uint8_t *path, const uint8_t *times, int flags)'),
    futimens: f('int futimens(int fd, const uint8_t *times)'),
    fcntl: f('int fcntl(int fd, int cmd, ...)'),
    // int64_t comes back as a number when it fits in one, else a BigInt: callers take BigInt(...) of it.
    lseek: f('int64_t lseek(int fd, int64_t offset, int whence)'),
    getdents64: f('long getdents64(int fd, _Out_ uint8_t *buf, size_t count)'),
    ftruncate: f('int ftruncate(int fd, int64_t length)'),
    fsync: f('int fsync(int fd)'),
    fdatasync: f('int fdatasync(int fd)'),
    fchmod: f('int fchmod(int fd, unsigned int mode)'),
    flock: f('int flock(int fd, int operation)'),
    posixFallocate: f('int posix_fallocate(int fd, int64_t offset, int64_t len)'),
    close: f('int close(int fd)'),
    dup: f('int dup(int fd)'),
    fdopendir: f('void *fdopendir(int fd)'),
    readdir: f('void *readdir(void *dir)'),
    closedir: f('int closedir(void *dir)'),
  };
  return libc;
}

/** `bytes` followed by a NUL, as the C calls take a path. */
export function cPath(bytes: Uint8Array | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  const out = Buffer.allocUnsafe(b.length + 1);
  out.set(b);
  out[b.length] = 0;
  return out;
}
