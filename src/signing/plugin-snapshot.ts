import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import { join } from 'node:path';
import {
  type FileLimits,
  fileNameProblem,
  inventoryPlugin,
  type PluginInventory,
} from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';

/**
 * Every file of a plugin read once: what is signed, verified and then used (issue 10, class 12). A file read
 * twice (once to check, once to use) can change in between; so the host verifies these bytes and loads its
 * manifest and entry point from them, never from the path again.
 */
export interface PluginSnapshot {
  /** The plugin directory's real path. */
  root: string;
  /** The walk the snapshot was taken from (fresh: files added since discovery count too). */
  inventory: PluginInventory;
  /** Regular files by relative path (`/` separators): their bytes as read. A Map: a name is data, never a key. */
  files: Map<string, Uint8Array>;
  /** Symlinks by relative path: their target text. */
  links: Map<string, string>;
}

// O_NOFOLLOW: a file swapped for a link after the walk is not followed (out of the plugin, or to a FIFO).
// O_NONBLOCK: opening a FIFO swapped in must not block the host's thread; it is then refused as not regular.
const OPEN_FLAGS =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0);
const HAS_PROC_FD = process.platform === 'linux';

/**
 * Walks `root` afresh and reads every regular file once, within `limits` (per file and in total), without
 * following links. Throws `signature_invalid` (with `pluginId`/`file`) when the directory changes under the
 * read in a way that would make the bytes differ from what was walked, and `file_name_invalid` when it holds a
 * name the host cannot account for.
 */
export function readPluginSnapshot(root: string, limits: FileLimits, pluginId?: string): PluginSnapshot {
  const at = (file: string) => ({ file, ...(pluginId === undefined ? {} : { pluginId }) });
  const who = pluginId === undefined ? root : `plugin "${pluginId}"`;
  const inventory = inventoryPlugin(root, limits);
  const first = inventory.unlisted[0];
  if (first !== undefined) {
    throw new ReedError(
      'file_name_invalid',
      `${who} holds "${first.path}", which ${first.reason}${inventory.unlisted.length > 1 ? ` (and ${inventory.unlisted.length - 1} more)` : ''}: it cannot be accounted for in a signature; rename or remove it`,
      { ...at(join(root, first.path)), details: { unlisted: inventory.unlisted.slice(0, 100) } },
    );
  }
  if (inventory.stoppedAt !== undefined) {
    throw new ReedError(
      inventory.stoppedAt,
      `${who} has more files or deeper directories than the file limits allow (${inventory.stoppedAt}): the listing would be incomplete`,
      at(root),
    );
  }
  const files = new Map<string, Uint8Array>();
  const links = new Map<string, string>();
  let total = 0;
  for (const f of inventory.files) {
    // The walk already refused these names; checked again because this is what the signature relies on.
    if (fileNameProblem(f.path) !== undefined) throw new Error(`unexpected name ${JSON.stringify(f.path)}`);
    const abs = join(root, f.path);
    if (f.kind === 'symlink') {
      try {
        links.set(f.path, readlinkSync(abs));
      } catch (error) {
        throw changed(who, f.path, (error as Error).message, at(abs));
      }
    } else if (f.kind === 'file') {
      const bytes = readRegularFile(
        abs,
        Math.min(limits.maxFileBytes, limits.maxPluginBytes - total),
        who,
        f.path,
        at(abs),
      );
      total += bytes.byteLength;
      files.set(f.path, bytes);
    }
  }
  return { root, inventory, files, links };
}

/** One bounded read of a regular file that must still be the file at `abs` (no link, no FIFO, not grown). */
function readRegularFile(
  abs: string,
  maxBytes: number,
  who: string,
  path: string,
  at: { file: string; pluginId?: string },
): Uint8Array {
  let fd: number;
  try {
    fd = openSync(abs, OPEN_FLAGS);
  } catch (error) {
    throw changed(who, path, (error as NodeJS.ErrnoException).code ?? 'cannot be opened', at);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw changed(who, path, 'is no longer a regular file', at);
    // O_NOFOLLOW covers the last name only: a directory above it swapped for a link is caught here, by asking
    // the kernel which file the descriptor really is.
    if (HAS_PROC_FD && readlinkSync(`/proc/self/fd/${fd}`) !== abs) {
      throw changed(who, path, 'was reached through a link', at);
    }
    if (st.size > maxBytes) {
      throw new ReedError(
        'file_too_large',
        `${path} of ${who} is ${st.size} bytes, above what the file limits leave for it (${maxBytes} bytes)`,
        at,
      );
    }
    // One byte more than fstat said: a file still growing is caught rather than cut.
    const bytes = new Uint8Array(st.size + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, bytes, length, bytes.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > st.size) throw changed(who, path, 'grew while it was read', at);
    }
    if (length !== st.size) throw changed(who, path, 'shrank while it was read', at);
    return bytes.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

function changed(who: string, path: string, why: string, at: { file: string; pluginId?: string }): ReedError {
  return new ReedError(
    'signature_invalid',
    `${path} of ${who} changed while it was read (${why}): nothing of it is used; try again once the directory is stable`,
    at,
  );
}
