// Path resolution for the WASI filesystem that cannot leave the directory a guest descriptor names (docs/SECURITY.md,
// "The WASI filesystem"). Every guest path is resolved relative to an open host directory descriptor, never as a
// host path string: with Linux openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, the kernel refuses absolute
// paths, `..` above the starting directory and any symlink leading out of it (EXDEV, answered as ENOTCAPABLE), and
// does so race-free (a rename racing the walk makes openat2 fail with EAGAIN, and we try again). Symlinks and `..`
// that stay inside are followed, as WASI programs expect, but never by the kernel: openat2 also gets
// RESOLVE_NO_SYMLINKS, so it resolves only paths without a symlink on the way (it answers ELOOP at the first one),
// each component charged at the kernel's price; a path that meets a symlink, and every path where openat2 does not
// exist (Linux < 5.6, gVisor before 2026: ENOSYS), is walked by us one component at a time with O_NOFOLLOW opens,
// each symlink read and expanded by us, with a stack of open descriptors for `..`: every component and every link
// charged before its system call, at most MAX_SYMLINKS links in all. The kernel following links itself could do
// 40 links' worth of components in one call that we cannot see, let alone charge (issue 10, class 6: 40 links through
// 4 KB `d/../d/..` paths, 3.6 ms of one path_filestat_get for 98,834 fuel).
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
import { FUEL_PER_BYTE } from './abi.js';
import { ERRNO, HostErrno, WasiErrno } from './wasi-types.js';

const E = constants.errno;
const SLASH = 0x2f;
const DOT = 0x2e;
/** openat2's RESOLVE_NO_SYMLINKS: ELOOP at the first symlink met (the last component's too, unless O_PATH|O_NOFOLLOW). */
const RESOLVE_NO_SYMLINKS = 0x04;
/** Symlinks followed in one resolution before ELOOP, as Linux's MAXSYMLINKS. */
export const MAX_SYMLINKS = 40;
/** Directories the manual walk keeps open for `..` at once; deeper in one path is ENAMETOOLONG. */
const MAX_MANUAL_DEPTH = 256;
/** Retries of openat2 when a concurrent rename raced it (EAGAIN). */
const MAX_RACE_RETRIES = 64;
/** The longest guest path accepted (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/**
 * The longest symlink target a plugin may create (ENAMETOOLONG past it): 1,023 bytes, what macOS and the BSDs allow
 * (their PATH_MAX, 1,024, with its NUL), so no portable program needs more; a relative target inside one plugin's
 * directory needs far less. It bounds what one link adds to a resolution (at most 512 components), and so what 40
 * of them can: 40 KB of targets, not Linux's 160 KB. Links already there (made by the operator, or before this
 * bound) are still followed, each byte and component charged.
 */
export const MAX_LINK_TARGET_BYTES = 1_023;

/**
 * Fuel for the work of a resolution (wasi-fs.ts passes the call's charge): each price is what its system call cost
 * through koffi (1 µs of host CPU is about 20,000 fuel; measured on ext4, Linux 6.18, Node 22).
 */
export type Charge = (fuel: number) => void;
/** Each component of a path openat2 resolves (a dentry lookup in the kernel: 0.08-0.09 µs). */
export const FUEL_PER_COMPONENT = 2_048;
/** Each component the manual walk opens (an openat and, later, its close: 2.8-3.7 µs). */
export const FUEL_PER_WALK_STEP = 65_536;
/** Each `..` the manual walk takes (a close and a pop), and each `.` (nothing but the parse). */
export const FUEL_PER_WALK_BACK = 16_384;
/** A statx of what the walk opened (is the last component a link?): 1.3-1.8 µs. */
const FUEL_PER_STAT = 32_768;
/** Each symlink the manual walk reads (a readlinkat: ~3.1 µs for 1 KB), before its target's bytes. */
export const FUEL_PER_LINK = 65_536;

let openat2Missing = false;

/** Use the manual walk even where openat2 exists (tests of the fallback). */
export function forceManualResolution(on: boolean): void {
  openat2Missing = on;
}

export function usesOpenat2(): boolean {
  return !openat2Missing;
}

const how = Buffer.alloc(24);
const linkBuf = Buffer.allocUnsafe(MAX_PATH_BYTES);

/**
 * Opens `path` beneath `dirfd` with `flags` (O_CLOEXEC added), following symlinks inside, the last one only
 * without O_NOFOLLOW. Returns the new host descriptor; throws HostErrno / WasiErrno(NOTCAPABLE). Every step is
 * charged to `charge` before it is taken.
 */
export function openBeneath(
  dirfd: number,
  path: Uint8Array,
  flags: number,
  charge: Charge,
  mode = 0,
): number {
  checkPath(path);
  if (path.length === 0) throw new WasiErrno(ERRNO.NOENT); // as open("") answers
  if (path[0] === SLASH) throw new WasiErrno(ERRNO.NOTCAPABLE);
  if (!openat2Missing) {
    const libc = loadLibc();
    how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
    how.writeBigUInt64LE(BigInt(mode), 8);
    how.writeBigUInt64LE(BigInt(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS), 16);
    const z = cPath(path);
    const price = componentCount(path) * FUEL_PER_COMPONENT;
    for (let attempt = 0; ; attempt++) {
      charge(price); // each attempt resolves the whole path again
      const fd = libc.openat2(SYS_OPENAT2, dirfd, z, how, 24) as number;
      if (fd >= 0) return fd;
      const errno = lastErrno();
      if (errno === E.EAGAIN && attempt < MAX_RACE_RETRIES) continue;
      if (errno === E.ENOSYS) {
        openat2Missing = true;
        break;
      }
      if (errno === E.EXDEV) throw new WasiErrno(ERRNO.NOTCAPABLE);
      // A symlink on the way (or a last one to follow, or not to open): ours to follow, or to answer ELOOP for.
      if (errno === E.ELOOP) break;
      throw new HostErrno(errno);
    }
  }
  return openManually(dirfd, path, flags, mode, charge);
}

/** Refuses what no resolution may take: a NUL inside (C would cut the path there) or more than PATH_MAX. */
function checkPath(path: Uint8Array): void {
  if (path.length > MAX_PATH_BYTES) throw new WasiErrno(ERRNO.NAMETOOLONG);
  if (path.indexOf(0) >= 0) throw new WasiErrno(ERRNO.INVAL);
}

/** The components of a path (none empty; `.` and `..` included), at least 1: what openat2 looks up. */
function componentCount(path: Uint8Array): number {
  let n = 0;
  for (let at = 0; at < path.length; at++)
    if (path[at] !== SLASH && (at === 0 || path[at - 1] === SLASH)) n++;
  return Math.max(n, 1);
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
export function resolveParent(dirfd: number, path: Uint8Array, charge: Charge): Parent {
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
  const fd = openBeneath(dirfd, parentPath, O_PATH | O_DIRECTORY, charge);
  return { fd, owned: true, name, trailingSlash };
}

export function releaseParent(parent: Parent): void {
  if (parent.owned) loadLibc().close(parent.fd);
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
}

/**
 * Puts the components of `path` (views of it, none empty) on `pending` so that the first is popped first.
 * Returns whether the path ended in a slash.
 */
function pushComponents(pending: Uint8Array[], path: Uint8Array): boolean {
  let end = path.length;
  while (end > 0) {
    const slash = path.lastIndexOf(SLASH, end - 1);
    if (end > slash + 1) pending.push(path.subarray(slash + 1, end));
    end = Math.max(slash, 0);
  }
  return path.length > 0 && path[path.length - 1] === SLASH;
}

/**
 * openat2's rules by hand: one component at a time, each opened O_NOFOLLOW relative to the one before; a symlink
 * is read and its target put in front of what is left (an absolute target is refused); `..` goes back to the
 * directory below on a stack of open descriptors, and `..` with an empty stack (above `dirfd`) is refused. Each
 * component is charged before it is opened, each link before it is read and its target by the byte: a resolution
 * costs what it does, whatever the links make of it. Long because it is one loop over one state (the stack, the
 * pending components, the links followed); split, the descriptors' ownership would cross functions.
 */
function openManually(dirfd: number, path: Uint8Array, flags: number, mode: number, charge: Charge): number {
  const libc = loadLibc();
  /** The components still to resolve, the next one last (a link's target is pushed on top: O(1) per component). */
  const pending: Uint8Array[] = [];
  let mustBeDir = pushComponents(pending, path);
  const stack: number[] = [];
  let cur = dirfd;
  let links = 0;
  const closeAll = () => {
    if (cur !== dirfd) libc.close(cur);
    for (const fd of stack) if (fd !== dirfd) libc.close(fd);
  };
  const expand = (name: Uint8Array): boolean => {
    charge(FUEL_PER_LINK);
    const n = libc.readlinkat(cur, cPath(name), linkBuf, linkBuf.length) as number;
    if (n < 0) return false;
    if (++links > MAX_SYMLINKS) throw new HostErrno(E.ELOOP);
    charge(n * FUEL_PER_BYTE);
    const target = Buffer.from(linkBuf.subarray(0, n));
    if (target[0] === SLASH) throw new WasiErrno(ERRNO.NOTCAPABLE);
    const atEnd = pending.length === 0;
    const trailingSlash = pushComponents(pending, target);
    if (atEnd) mustBeDir ||= trailingSlash;
    return true;
  };
  try {
    for (;;) {
      const part = pending.pop();
      const isLast = pending.length === 0;
      const dot = part !== undefined && part.length === 1 && part[0] === DOT;
      if (part !== undefined && part.length === 2 && part[0] === DOT && part[1] === DOT) {
        charge(FUEL_PER_WALK_BACK);
        const below = stack.pop();
        if (below === undefined) throw new WasiErrno(ERRNO.NOTCAPABLE);
        if (cur !== dirfd) libc.close(cur);
        cur = below;
        if (!isLast) continue;
      } else if (part !== undefined && !dot && !isLast) {
        charge(FUEL_PER_WALK_STEP);
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
      } else if (part !== undefined && !dot) {
        // The last component: opened without following; a symlink there is followed only if asked (or if a
        // trailing slash says it must be a directory).
        const follow = (flags & O_NOFOLLOW) === 0 || mustBeDir;
        const checkLink = (flags & O_PATH) !== 0 && follow;
        charge(FUEL_PER_WALK_STEP + (checkLink ? FUEL_PER_STAT : 0));
        const lastFlags = (flags | O_NOFOLLOW | (mustBeDir ? O_DIRECTORY : 0) | O_CLOEXEC) >>> 0;
        const fd = libc.openat(cur, cPath(part), lastFlags, mode) as number;
        if (fd >= 0) {
          if (checkLink && isSymlinkFd(fd)) {
            libc.close(fd);
            if (expand(part)) continue;
          }
          return fd;
        }
        const errno = lastErrno();
        if (follow && (errno === E.ELOOP || errno === E.ENOTDIR) && expand(part)) continue;
        throw new HostErrno(errno);
      } else if (dot) {
        charge(FUEL_PER_WALK_BACK);
      }
      if (pending.length > 0) continue;
      // Ended on `.` or `..` (or an empty path): the directory reached is what is opened.
      charge(FUEL_PER_WALK_STEP);
      const fd = libc.openat(cur, cPath('.'), (flags | O_CLOEXEC) >>> 0, mode) as number;
      if (fd < 0) throw new HostErrno(lastErrno());
      return fd;
    }
  } finally {
    closeAll();
  }
}

const symlinkStat = Buffer.alloc(256);

function isSymlinkFd(fd: number): boolean {
  const AT_EMPTY_PATH = 0x1000;
  if ((loadLibc().statx(fd, cPath(''), AT_EMPTY_PATH, 0x2, symlinkStat) as number) !== 0) return false;
  return (symlinkStat.readUInt16LE(28) & 0o170000) === 0o120000;
}
