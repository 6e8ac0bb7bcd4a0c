import { closeSync, fchownSync, constants as fsConstants, fstatSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ReedError } from '../../errors.js';

export interface DataDirHandOver {
  /**
   * The group the sandboxes that use the directory run with (process mode: the directory's leased group; container
   * mode: the container user's gid): the directory (0770, the host user's) is given this group, so they can enter
   * it and no other runner uid can. Undefined: unchanged (the sandbox runs as the directory's owner).
   */
  gid?: number | undefined;
  /**
   * Process mode on a root host: bubblewrap resolves the path of what it binds as the runner's uid, so every
   * directory above the plugin's must be passable by others (o+x); checked here, so the refusal says what to change.
   */
  passable?: boolean;
}

/**
 * Opens the plugin's data directory (made and checked by the host at load: src/plan/data-dir.ts) for the sandbox
 * about to use it: a directory, never through a link, with its group handed over. Returns the descriptor
 * (close-on-exec; process mode passes it down for bubblewrap to bind, which checks that what it bound is this
 * directory). Throws `data_dir_unavailable`.
 */
export function openDataDir(pluginId: string, path: string, handOver: DataDirHandOver = {}): number {
  if (handOver.passable === true) {
    for (let at = dirname(path); ; at = dirname(at)) {
      const st = statSync(at, { throwIfNoEntry: false });
      if (st === undefined || (st.mode & 0o001) === 0) {
        throw unavailable(
          pluginId,
          path,
          `${at} is not passable by others (o+x): a process-mode runner's uid cannot reach the directory to bind it; put data_dir under directories others may pass (e.g. data_dir = "/var/lib/reed")`,
        );
      }
      if (at === dirname(at)) break;
    }
  }
  let fd: number | undefined;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isDirectory()) throw new Error('not a directory');
    if (handOver.gid !== undefined && st.gid !== handOver.gid) {
      try {
        fchownSync(fd, -1, handOver.gid);
      } catch (error) {
        throw new Error(
          `the host cannot give it the sandbox's group ${handOver.gid} (${(error as Error).message}): a host that is not root can hand it only to a group it is in; run the host as root`,
        );
      }
    }
    return fd;
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    throw unavailable(pluginId, path, (error as Error).message, error);
  }
}

function unavailable(pluginId: string, path: string, why: string, cause?: unknown): ReedError {
  return new ReedError(
    'data_dir_unavailable',
    `the data directory of plugin "${pluginId}" cannot be given to its sandbox: ${path}: ${why}`,
    { pluginId, ...(cause === undefined ? {} : { cause }) },
  );
}

/**
 * When the sandbox that was handed the directory stops: its group goes back to the host's own, unless another
 * sandbox has taken it since, so a gid released to another plugin's sandbox
 * never opens this directory. Never throws: a directory that is gone or cannot be changed is reported.
 */
export function takeDataDirBack(path: string, gid: number, warn: (message: string) => void): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
    if (fstatSync(fd).gid === gid) fchownSync(fd, -1, process.getgid?.() ?? 0);
  } catch (error) {
    warn(`the data directory ${path} keeps the group of a stopped sandbox: ${(error as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
