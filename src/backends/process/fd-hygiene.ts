// No host fd reaches a child by accident (docs/SECURITY.md, "Found by our own adversarial passes").
//
// exec keeps every fd that lacks FD_CLOEXEC. Node and libuv open theirs close-on-exec, but not all a host holds is
// theirs: LMDB opened its data file without it, and whatever the host inherited from its parent (a shell's, a
// supervisor's) has no such flag. Every process-mode runner got them all: a native plugin pread and pwrite the
// storage file of every plugin, and trashed pages until the host died of SIGBUS. Node has no fcntl: libc through
// koffi (src/runtime/libc.ts).
import { readdirSync, readlinkSync } from 'node:fs';
import type { LibraryHandle } from 'koffi';
import { libcHandle } from '../../runtime/libc.js';

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const CLOSE_RANGE_CLOEXEC = 4;

type Fn = ReturnType<LibraryHandle['func']>;
let calls: { fcntl: Fn; closeRange: Fn | undefined } | undefined;

function load(): { fcntl: Fn; closeRange: Fn | undefined } {
  if (calls !== undefined) return calls;
  const libc = libcHandle();
  let closeRange: Fn | undefined;
  try {
    // glibc 2.34 and later; older C libraries fall back to the /proc walk below.
    closeRange = libc.func('int close_range(unsigned int first, unsigned int last, int flags)');
  } catch {}
  calls = { fcntl: libc.func('int fcntl(int fd, int cmd, ...)'), closeRange };
  return calls;
}

/** Sets FD_CLOEXEC on one fd; false if it is not open. */
export function setCloseOnExec(fd: number): boolean {
  const { fcntl } = load();
  const flags = fcntl(fd, F_GETFD) as number;
  return flags >= 0 && (fcntl(fd, F_SETFD, 'int', flags | FD_CLOEXEC) as number) === 0;
}

/**
 * Marks every fd from 3 up close-on-exec, so that a child spawned next gets only what its spawn passes on purpose
 * (stdio and extra pipes: libuv dup2s those into place, which clears the flag on the child's copy). Called right
 * before each sandbox's spawn, in the same tick: an fd a host thread opens without O_CLOEXEC between the two is the
 * one gap (Node's and libuv's own are all close-on-exec). One close_range(2) where the kernel (5.11) and libc have
 * it, else each fd /proc/self/fd lists. Throws when neither works: the caller must then not spawn.
 */
export function closeOnExecFrom3(): void {
  const c = load();
  if (c.closeRange !== undefined && (c.closeRange(3, 0xffffffff, CLOSE_RANGE_CLOEXEC) as number) === 0)
    return;
  for (const name of readdirSync('/proc/self/fd')) {
    // The listing's own fd is closed by now: setCloseOnExec says false, nothing to do.
    if (Number(name) >= 3) setCloseOnExec(Number(name));
  }
}

/** Sets FD_CLOEXEC on every fd open on a file under `dir` (a library's files, opened by code we do not control). */
export function closeOnExecUnder(dir: string): number {
  let marked = 0;
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`).startsWith(`${dir}/`) && setCloseOnExec(Number(name)))
        marked++;
    } catch {}
  }
  return marked;
}
