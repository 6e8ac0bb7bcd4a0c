// Path resolution for the WASI filesystem that cannot leave the directory a guest descriptor names (docs/SECURITY.md,
// "The WASI filesystem"). Every guest path is resolved relative to an open host directory descriptor, never as a
// host path string: with Linux openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, the kernel refuses absolute
// paths, `..` above the starting directory and any symlink leading out of it (EXDEV, answered as ENOTCAPABLE), and
// does so race-free (a rename racing the walk makes openat2 fail with EAGAIN, and we try again). Symlinks and `..`
// that stay inside are followed, as WASI programs expect. Where openat2 does not exist (Linux < 5.6, gVisor before
// 2026: ENOSYS) the same rules are applied by walking one component at a time with O_NOFOLLOW opens, reading each
// symlink and expanding it ourselves, with a stack of open descriptors for `..`: slower, the same answers.
import { constants } from 'node:os';
import {
  cPath,
  lastErrno,
  loadLibc,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  SYS_OPENAT2,
} from '../libc.js';
import { ERRNO, HostErrno, WasiErrno } from './wasi-types.js';

const E = constants.errno;
const SLASH = 0x2f;
const DOT = 0x2e;
/** Symlinks followed in one resolution before ELOOP, as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;
/** Directories the manual walk keeps open for `..` at once; deeper in one path is ENAMETOOLONG. */
const MAX_MANUAL_DEPTH = 256;
/** Retries of openat2 when a concurrent rename raced it (EAGAIN). */
const MAX_RACE_RETRIES = 64;
/** The longest guest path accepted (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

let openat2Missing = false;

/** Use the manual walk even where openat2 exists (tests of the fallback). */
export function forceManualResolution(on: boolean): void {
  openat2Missing = on;
}

export function usesOpenat2(): boolean {
  return !openat2Missing;
}

const how = Buffer.alloc(24);

/**
 * Opens `path` beneath `dirfd` with `flags` (O_CLOEXEC added), following symlinks inside, the last one only
 * without O_NOFOLLOW. Returns the new host descriptor; throws HostErrno / WasiErrno(NOTCAPABLE).
 */
export function openBeneath(dirfd: number, path: Uint8Array, flags: number, mode = 0): number {
  checkPath(path);
  if (path.length === 0) throw new WasiErrno(ERRNO.NOENT); // as open("") answers
  if (path[0] === SLASH) throw new WasiErrno(ERRNO.NOTCAPABLE);
  if (!openat2Missing) {
    const libc = loadLibc();
    how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
    how.writeBigUInt64LE(BigInt(mode), 8);
    how.writeBigUInt64LE(BigInt(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), 16);
    const z = cPath(path);
    for (let attempt = 0; ; attempt++) {
      const fd = libc.openat2(SYS_OPENAT2, dirfd, z, how, 24) as number;
      if (fd >= 0) return fd;
      const errno = lastErrno();
      if (errno === E.EAGAIN && attempt < MAX_RACE_RETRIES) continue;
      if (errno === E.ENOSYS) {
        openat2Missing = true;
        break;
      }
      if (errno === E.EXDEV) throw new WasiErrno(ERRNO.NOTCAPABLE);
      throw new HostErrno(errno);
    }
  }
  return openManually(dirfd, path, flags, mode);
}

/** Refuses what no resolution may take: a NUL inside (C would cut the path there) or more than PATH_MAX. */
function checkPath(path: Uint8Array): void {
  if (path.length > MAX_PATH_BYTES) throw new WasiErrno(ERRNO.NAMETOOLONG);
  if (path.indexOf(0) >= 0) throw new WasiErrno(ERRNO.INVAL);
}

/** A path split for the *at calls: the directory that holds the last component, and that component. */
export interface Parent {
  /** An O_PATH descriptor of the directory (or `dirfd` itself when `owned` is false). */
  fd: number;
  owned: boolean;
  /** The last component, with a trailing slash when the path had one; `.` for a path ending in `.` or `..`. */
  name: Buffer;
  /** Whether the path ended in one or more slashes. */
  trailingSlash: boolean;
}

/**
 * Resolves all of `path` but its last component beneath `dirfd`. A path ending in `.` or `..` resolves whole and
 * names `.` in it, so no *at call is ever given `..` (which would reach the parent of the directory itself).
 */
export function resolveParent(dirfd: number, path: Uint8Array): Parent {
  checkPath(path);
  if (path.length === 0) throw new WasiErrno(ERRNO.NOENT);
  if (path[0] === SLASH) throw new WasiErrno(ERRNO.NOTCAPABLE);
  let end = path.length;
  while (end > 0 && path[end - 1] === SLASH) end--;
  const trailingSlash = end < path.length;
  const slash = path.lastIndexOf(SLASH, end - 1);
  const last = path.subarray(slash + 1, end);
  const dots = isDotOrDotDot(last);
  const parentPath = dots ? path.subarray(0, end) : slash < 0 ? undefined : path.subarray(0, slash);
  const name = dots ? Buffer.from('.') : Buffer.from(path.subarray(slash + 1, trailingSlash ? end + 1 : end));
  if (parentPath === undefined) return { fd: dirfd, owned: false, name, trailingSlash };
  const fd = openBeneath(dirfd, parentPath, O_PATH | O_DIRECTORY);
  return { fd, owned: true, name, trailingSlash };
}

export function releaseParent(parent: Parent): void {
  if (parent.owned) loadLibc().close(parent.fd);
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
}

/** The components of a path, and whether it ended in a slash. */
function components(path: Uint8Array): { parts: Buffer[]; trailingSlash: boolean } {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < path.length) {
    const next = path.indexOf(SLASH, at);
    const end = next < 0 ? path.length : next;
    if (end > at) parts.push(Buffer.from(path.subarray(at, end)));
    at = end + 1;
  }
  return { parts, trailingSlash: path.length > 0 && path[path.length - 1] === SLASH };
}

/**
 * openat2's rules by hand: one component at a time, each opened O_NOFOLLOW relative to the one before; a symlink
 * is read and its target put in front of what is left (an absolute target is refused); `..` goes back to the
 * directory below on a stack of open descriptors, and `..` with an empty stack (above `dirfd`) is refused.
 * Long because it is one loop over one state (the stack, the queue of components, the links followed);
 * split, the descriptors' ownership would cross functions.
 */
function openManually(dirfd: number, path: Uint8Array, flags: number, mode: number): number {
  const libc = loadLibc();
  const first = components(path);
  const queue = first.parts;
  let mustBeDir = first.trailingSlash;
  const stack: number[] = [];
  let cur = dirfd;
  let links = 0;
  const closeAll = () => {
    if (cur !== dirfd) libc.close(cur);
    for (const fd of stack) if (fd !== dirfd) libc.close(fd);
  };
  const expand = (name: Buffer): boolean => {
    const buf = Buffer.allocUnsafe(MAX_PATH_BYTES);
    const n = libc.readlinkat(cur, cPath(name), buf, buf.length) as number;
    if (n < 0) return false;
    if (++links > MAX_SYMLINKS) throw new HostErrno(E.ELOOP);
    const target = buf.subarray(0, n);
    if (target[0] === SLASH) throw new WasiErrno(ERRNO.NOTCAPABLE);
    const more = components(target);
    if (queue.length === 0) mustBeDir ||= more.trailingSlash;
    queue.unshift(...more.parts);
    return true;
  };
  try {
    for (;;) {
      const part = queue.shift();
      const isLast = queue.length === 0;
      if (part !== undefined && part.length === 2 && part[0] === DOT && part[1] === DOT) {
        const below = stack.pop();
        if (below === undefined) throw new WasiErrno(ERRNO.NOTCAPABLE);
        if (cur !== dirfd) libc.close(cur);
        cur = below;
        if (!isLast) continue;
      } else if (part !== undefined && !(part.length === 1 && part[0] === DOT) && !isLast) {
        const next = libc.openat(
          cur,
          cPath(part),
          O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
          0,
        ) as number;
        if (next >= 0) {
          if (stack.length >= MAX_MANUAL_DEPTH) {
            libc.close(next);
            throw new HostErrno(E.ENAMETOOLONG);
          }
          stack.push(cur);
          cur = next;
          continue;
        }
        const errno = lastErrno();
        if ((errno === E.ENOTDIR || errno === E.ELOOP) && expand(part)) continue;
        throw new HostErrno(errno);
      } else if (part !== undefined && !(part.length === 1 && part[0] === DOT)) {
        // The last component: opened without following; a symlink there is followed only if asked (or if a
        // trailing slash says it must be a directory).
        const follow = (flags & O_NOFOLLOW) === 0 || mustBeDir;
        const lastFlags = (flags | O_NOFOLLOW | (mustBeDir ? O_DIRECTORY : 0) | O_CLOEXEC) >>> 0;
        const fd = libc.openat(cur, cPath(part), lastFlags, mode) as number;
        if (fd >= 0) {
          if ((flags & O_PATH) !== 0 && follow && isSymlinkFd(fd)) {
            libc.close(fd);
            if (expand(part)) continue;
          }
          return fd;
        }
        const errno = lastErrno();
        if (follow && (errno === E.ELOOP || errno === E.ENOTDIR) && expand(part)) continue;
        throw new HostErrno(errno);
      }
      if (queue.length > 0) continue;
      // Ended on `.` or `..` (or an empty path): the directory reached is what is opened.
      const fd = libc.openat(cur, cPath('.'), (flags | O_CLOEXEC) >>> 0, mode) as number;
      if (fd < 0) throw new HostErrno(lastErrno());
      return fd;
    }
  } finally {
    closeAll();
  }
}

function isSymlinkFd(fd: number): boolean {
  const buf = Buffer.alloc(256);
  const AT_EMPTY_PATH = 0x1000;
  if ((loadLibc().statx(fd, cPath(''), AT_EMPTY_PATH, 0x2, buf) as number) !== 0) return false;
  return (buf.readUInt16LE(28) & 0o170000) === 0o120000;
}
