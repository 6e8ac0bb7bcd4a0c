// A small JSON record on disk, written atomically and read back bounded: the installed-plugin pointer
// (host/plugin-store.ts), each API token (tenants/tokens.ts) and each runtime tenant's tenant.json
// (tenants/tenant-store.ts). One place for the sequence every one of them needs, so that none of them forgets a step.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/** `<name>.<16 hex digits>.tmp`: a record's temporary file, beside it, never valid by itself. */
const TEMP = /^(.+)\.[0-9a-f]{16}\.tmp$/;

/**
 * Writes `value` as JSON to `<dir>/<name>` atomically and durably: the text goes to a new file beside it (created
 * exclusively, never through a link, mode 0600), which is fsynced, renamed over `name`, and the directory fsynced.
 * A process killed at any moment leaves the old record or the new one, never a part of one; at worst a temporary
 * file (`removeRecordTemps` removes those). A write that fails removes its temporary file.
 */
export function writeJsonRecord(dir: string, name: string, value: unknown, indent?: number): void {
  // Serialized first: a value that cannot be (a BigInt, a cycle) fails before anything is made.
  const text = `${JSON.stringify(value, null, indent)}\n`;
  const tmp = join(dir, `${name}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, name));
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {
      // Already renamed, or gone: nothing to remove.
    }
    throw error;
  }
  fsyncDir(dir);
}

/**
 * Reads the JSON record at `path`: opened without following a link (and without blocking on a FIFO), a regular file
 * of at most `maxBytes`, parsed. Undefined when there is no such file. Anything else that is wrong throws what
 * `fail(why, cause)` makes (the caller's code and wording).
 */
export function readJsonRecord(
  path: string,
  maxBytes: number,
  fail: (why: string, cause?: unknown) => Error,
): unknown {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw fail(code === 'ELOOP' ? 'it is a link (not followed)' : (code ?? (error as Error).message), error);
  }
  let text: string;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw fail('not a regular file');
    if (st.size > maxBytes) throw fail(`larger than ${maxBytes} bytes`);
    // One byte more than the file's size: a file that grew after the fstat is refused, not cut.
    const buf = Buffer.alloc(st.size + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
      if (got === buf.length) throw fail(`it changed while it was read (larger than ${st.size} bytes)`);
    }
    text = buf.toString('utf8', 0, got);
  } finally {
    closeSync(fd);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw fail(`not JSON: ${(error as Error).message}`, error);
  }
}

/**
 * Removes the temporary files of `name`'s record writes in `dir` (every record when `name` is undefined) that a
 * killed writer left. Only for a directory whose one writer is this process (it would remove a live writer's).
 * Answers how many it removed.
 */
export function removeRecordTemps(dir: string, name?: string): number {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const n of names) {
    const m = TEMP.exec(n);
    if (m === null || (name !== undefined && m[1] !== name)) continue;
    try {
      unlinkSync(join(dir, n));
      removed++;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return removed;
}

/** fsyncs a directory (its entries: a rename, a creation, a removal in it). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
