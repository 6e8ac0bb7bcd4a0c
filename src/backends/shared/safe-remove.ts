// One recursive delete for every directory a plugin or runner could have written (docs/SECURITY.md, "The one delete").
//
// Node's fs.rm/rmSync walk by path: a hostile process that swaps a directory for a symlink between the walk's
// lstat and its next step makes a root host delete files outside the tree, and a chain deeper than PATH_MAX
// throws ENAMETOOLONG. This walks by descriptor instead, through libc (koffi, already a dependency; Node has no
// openat/unlinkat; the binding is src/runtime/libc.ts): every step is relative to an open directory, every open is O_NOFOLLOW|O_DIRECTORY, `unlinkat`
// never follows a link, and going back up goes through "..", checked against the device and inode recorded on
// the way down. At most two descriptors are open at a time whatever the depth, so any depth is fine. (GNU `rm -rf
// --one-file-system` does the same with fts, but the orchestrator image has no coreutils: libc is all there is.)
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import koffi from 'koffi';
import type { Logger } from 'pino';
import { type Libc, loadLibc } from '../../runtime/libc.js';

const E = osConstants.errno;
const AT_FDCWD = -100;
const AT_REMOVEDIR = 0x200;
const AT_EMPTY_PATH = 0x1000;
const STATX_INO = 0x100;
const O_CLOEXEC = 0o2000000;
const OPEN_DIR = fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW | O_CLOEXEC;
/** Names read from a directory before acting on them: bounds memory whatever the directory holds. */
const BATCH = 512;
/** Steps between yields to the event loop, so a huge tree does not freeze the host. */
const STEPS_PER_TICK = 2_000;
/** Passes over names that changed type under us (a live swap race) before giving up on the tree. */
const MAX_RETRIES = 10_000;

const load = (): Libc => loadLibc();

class RemoveError extends Error {
  constructor(
    message: string,
    readonly errno = 0,
  ) {
    super(message);
  }
}

const cstr = (name: Buffer) => Buffer.concat([name, Buffer.from([0])]);
const DOT = cstr(Buffer.from('.'));
const DOTDOT = cstr(Buffer.from('..'));
const EMPTY = Buffer.from([0]);

/** Device and inode of an open descriptor. */
function identity(c: Libc, fd: number): string {
  const buf = Buffer.alloc(256);
  if ((c.statx(fd, EMPTY, AT_EMPTY_PATH, STATX_INO, buf) as number) !== 0)
    throw new RemoveError('statx failed', koffi.errno());
  return `${buf.readUInt32LE(136)}:${buf.readUInt32LE(140)}:${buf.readBigUInt64LE(32)}`;
}
const deviceOf = (id: string) => id.slice(0, id.lastIndexOf(':'));

/** Up to BATCH names in the directory `fd` (not . or ..), as raw bytes: names need not be UTF-8. */
function readNames(c: Libc, fd: number): Buffer[] {
  const copy = c.dup(fd) as number;
  if (copy < 0) throw new RemoveError('dup failed', koffi.errno());
  const dir = c.fdopendir(copy);
  if (dir === null) {
    c.close(copy);
    throw new RemoveError('fdopendir failed', koffi.errno());
  }
  const names: Buffer[] = [];
  try {
    while (names.length < BATCH) {
      const entry = c.readdir(dir);
      if (entry === null) break;
      // struct dirent on 64-bit glibc and musl: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name[].
      const reclen = Buffer.from(koffi.view(entry, 19)).readUInt16LE(16);
      const raw = Buffer.from(koffi.view(entry, reclen)).subarray(19);
      const name = Buffer.from(raw.subarray(0, raw.indexOf(0) < 0 ? raw.length : raw.indexOf(0)));
      if (name.equals(DOT.subarray(0, 1)) || name.equals(DOTDOT.subarray(0, 2))) continue;
      names.push(name);
    }
  } finally {
    c.closedir(dir);
  }
  return names;
}

interface Level {
  /** This directory's name in its parent. */
  name: Buffer;
  /** The parent's identity, checked when coming back up. */
  parent: string;
}

/**
 * Deletes `path` and everything under it without following any symlink and without leaving it, whatever a
 * hostile process does meanwhile; never crosses into another file system (a mount inside is left, logged).
 * Resolves `true` when `path` is gone, `false` when something stayed; never rejects: failures are logged with
 * the code `cleanup_failed`, so a caller in a `finally` or a sweep carries on.
 */
export async function removeTree(path: string, logger?: Logger): Promise<boolean> {
  try {
    await removeOrThrow(path);
    return true;
  } catch (error) {
    const errno = error instanceof RemoveError ? error.errno : undefined;
    logger?.warn(
      { code: 'cleanup_failed', path, errno, err: error },
      `could not remove ${path}: ${(error as Error).message}; remove it by hand once nothing runs there`,
    );
    return false;
  }
}

/**
 * Long because it is one loop over one state (the open directory, its identity, the stack of levels below the
 * top): descend, unlink, climb back checked. Split, the descriptor's ownership would cross functions, where a
 * leaked descriptor or a skipped identity check would be easy to miss.
 */
async function removeOrThrow(path: string): Promise<void> {
  const c = load();
  const top = cstr(Buffer.from(path));
  let cur = c.openat(AT_FDCWD, top, OPEN_DIR, 0) as number;
  if (cur < 0) {
    const errno = koffi.errno();
    if (errno === E.ENOENT) return;
    // A file or a symlink where the directory was: unlink that name, never what it points to.
    if (errno === E.ENOTDIR || errno === E.ELOOP) {
      if ((c.unlinkat(AT_FDCWD, top, 0) as number) !== 0 && koffi.errno() !== E.ENOENT)
        throw new RemoveError('unlink failed', koffi.errno());
      return;
    }
    throw new RemoveError('open failed', errno);
  }
  const rootId = identity(c, cur);
  let curId = rootId;
  const stack: Level[] = [];
  let steps = 0;
  let retries = 0;
  try {
    for (;;) {
      const names = readNames(c, cur);
      steps += names.length + 1;
      if (steps >= STEPS_PER_TICK) {
        steps = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
      let descended = false;
      for (const name of names) {
        const z = cstr(name);
        if ((c.unlinkat(cur, z, 0) as number) === 0) continue;
        const errno = koffi.errno();
        if (errno === E.ENOENT) continue;
        if (errno !== E.EISDIR && errno !== E.EPERM) throw new RemoveError('unlink failed', errno);
        const child = c.openat(cur, z, OPEN_DIR, 0) as number;
        if (child < 0) {
          const e = koffi.errno();
          // Swapped for a link or a file since: the next pass unlinks whatever is there now.
          if ((e === E.ENOTDIR || e === E.ELOOP || e === E.ENOENT) && ++retries <= MAX_RETRIES) continue;
          throw new RemoveError('open failed', e);
        }
        const childId = identity(c, child);
        if (deviceOf(childId) !== deviceOf(rootId)) {
          c.close(child);
          throw new RemoveError('a file system is mounted inside; it was left in place', E.EXDEV);
        }
        stack.push({ name, parent: curId });
        c.close(cur);
        cur = child;
        curId = childId;
        descended = true;
        break;
      }
      if (descended || names.length > 0) continue;
      // Empty: go back up (checked: a directory moved elsewhere meanwhile must not take us with it) and remove it.
      const level = stack.pop();
      if (level === undefined) break;
      const parent = c.openat(cur, DOTDOT, OPEN_DIR, 0) as number;
      if (parent < 0) throw new RemoveError('open .. failed', koffi.errno());
      if (identity(c, parent) !== level.parent) {
        c.close(parent);
        throw new RemoveError('a directory was moved out of the tree while it was being removed', E.EXDEV);
      }
      c.close(cur);
      cur = parent;
      curId = level.parent;
      if ((c.unlinkat(cur, cstr(level.name), AT_REMOVEDIR) as number) !== 0) {
        const e = koffi.errno();
        // Refilled or swapped meanwhile: the next pass sees what is there now.
        if (e !== E.ENOENT && e !== E.ENOTEMPTY && e !== E.EEXIST && e !== E.ENOTDIR)
          throw new RemoveError('rmdir failed', e);
        if (++retries > MAX_RETRIES) throw new RemoveError('the tree keeps changing', e);
      }
    }
  } finally {
    c.close(cur);
  }
  // The top itself, by the path the caller trusts: rmdir never follows a final symlink.
  if ((c.unlinkat(AT_FDCWD, top, AT_REMOVEDIR) as number) !== 0 && koffi.errno() !== E.ENOENT)
    throw new RemoveError('rmdir failed', koffi.errno());
}
