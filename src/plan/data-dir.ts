import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  type Stats,
  statfsSync,
  statSync,
} from 'node:fs';
import { dirname, isAbsolute, normalize, sep } from 'node:path';
import { ReedError } from '../errors.js';
import { DATA_FILES_DIR, pluginDataDir } from '../manifest/data-dir.js';

/**
 * Makes (or checks) a plugin's data directory, `<data_dir>/files/<plugin id>`, before its sandbox starts, and
 * returns its path. Never follows a link: every component of the path, from `/` down, is looked at with lstat and
 * must be a real directory, owned by root or the host's user, and writable by no one else (a sticky directory
 * such as /tmp excepted); a missing one is made, one level at a time, and looked at again. No one but root and
 * the host's user can then swap a component for a link between this check and its use (a bind mount, WASI's
 * open).
 *
 * Modes: `files/` is the host user's (root's when the host runs as root), 0711: it cannot be listed, and bubblewrap,
 * which runs as a process-mode runner's uid and resolves the path of what it binds as that uid, can pass through
 * it (on a root host data_dir gets the same o+x; the directories above it must already have it for process mode).
 * The plugin's directory is the host user's, 0770: its group is given to the sandboxes that use it when they start
 * (process mode: a group leased for the directory while its runners live; container mode: the container user's
 * gid; src/backends/shared/data-dir.ts), so no other runner uid can enter it, while every successive runner of the
 * plugin can (files inside are 0666 and directories 0777: each sandbox has a uid of its own; docs/SECURITY.md).
 *
 * Kept across restarts, replaces and upgrades, and by PluginHost.remove: only the operator removes it.
 * Throws `data_dir_unavailable` naming the path and what is wrong with it.
 */
/** `<data_dir>/files`: passable, not listable (see ensureDataDir). */
export const FILES_MODE = 0o711;
/** A plugin's directory: its owner and the group of the sandbox using it. */
export const PLUGIN_DIR_MODE = 0o770;

export function ensureDataDir(dataDir: string, pluginId: string): string {
  const path = pluginDataDir(dataDir, pluginId);
  const files = dirname(path);
  if (!isAbsolute(dataDir) || normalize(dataDir) !== dataDir) {
    throw unavailable(pluginId, dataDir, 'data_dir is not an absolute, normalised path');
  }
  const uid = process.getuid?.() ?? 0;
  // Every component above files/: root's or ours, and not writable by others unless sticky.
  let at = '';
  for (const part of files.split(sep).slice(1, -1)) {
    at = `${at}/${part}`;
    checkComponent(pluginId, at, made(pluginId, at, 0o700), uid, false);
  }
  // data_dir itself, on a root host: passable by others (not listable), so that bubblewrap, running as a leased
  // runner uid, can reach files/ (its other entries keep their own modes: storage/ is 0700).
  const top = lstatSync(dataDir);
  if (uid === 0 && top.uid === 0 && (top.mode & 0o001) === 0)
    chmodOrThrow(pluginId, dataDir, (top.mode & 0o7777) | 0o001);
  // files/: ours alone, 0711 (set again if someone changed it).
  const filesStat = made(pluginId, files, FILES_MODE);
  checkComponent(pluginId, files, filesStat, uid, true);
  if ((filesStat.mode & 0o7777) !== FILES_MODE) chmodOrThrow(pluginId, files, FILES_MODE);
  // files/<id>/: root's or ours, a real directory, 0770 (umask does not apply to chmod).
  const dirStat = made(pluginId, path, PLUGIN_DIR_MODE);
  if (!dirStat.isDirectory() || dirStat.isSymbolicLink()) {
    throw unavailable(pluginId, path, 'it is not a directory (a link or a file is never followed)');
  }
  if (dirStat.uid !== uid && dirStat.uid !== 0) {
    throw unavailable(pluginId, path, `it belongs to uid ${dirStat.uid}, not to root or the host's user`);
  }
  if ((dirStat.mode & 0o7777) !== PLUGIN_DIR_MODE) chmodOrThrow(pluginId, path, PLUGIN_DIR_MODE);
  return path;
}

/** The component's lstat, after making it (mode, then chmod: umask would narrow it) when it did not exist. */
function made(pluginId: string, path: string, mode: number): Stats {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st !== undefined) return st;
  try {
    mkdirSync(path, { mode });
  } catch (error) {
    // Another host made it at the same moment: fine, it is checked below like any existing one.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
      throw unavailable(pluginId, path, (error as Error).message, error);
  }
  const now = lstatSync(path);
  if (now.isDirectory() && !now.isSymbolicLink()) chmodOrThrow(pluginId, path, mode);
  return lstatSync(path);
}

function checkComponent(pluginId: string, path: string, st: Stats, uid: number, ownOnly: boolean): void {
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw unavailable(
      pluginId,
      path,
      'it is a link or not a directory (the data directory path is never followed)',
    );
  }
  if (ownOnly ? st.uid !== uid : st.uid !== uid && st.uid !== 0) {
    throw unavailable(
      pluginId,
      path,
      `it belongs to uid ${st.uid}; it must belong to ${ownOnly ? `the host's user (uid ${uid})` : "root or the host's user"}`,
    );
  }
  if ((st.mode & 0o022) !== 0 && (ownOnly || (st.mode & 0o1000) === 0)) {
    throw unavailable(
      pluginId,
      path,
      `it is writable by others (mode ${(st.mode & 0o7777).toString(8)}): they could replace what is under it`,
    );
  }
}

function chmodOrThrow(pluginId: string, path: string, mode: number): void {
  try {
    chmodSync(path, mode);
  } catch (error) {
    throw unavailable(pluginId, path, (error as Error).message, error);
  }
}

function unavailable(pluginId: string, path: string, why: string, cause?: unknown): ReedError {
  return new ReedError(
    'data_dir_unavailable',
    `the data directory of plugin "${pluginId}" cannot be used: ${path}: ${why} (data_dir in reed.toml; the directory is ${DATA_FILES_DIR}/<plugin id> under it)`,
    { pluginId, field: 'data_dir', ...(cause === undefined ? {} : { cause }) },
  );
}

const EXT4_SUPER_MAGIC = 0xef53;

/**
 * Whether `path` is on ext4 without a journal. There the kernel has each new inode skip those deleted in the last
 * minute or so (find_inode_bit and recently_deleted, which only journal-less ext4 does), up to a whole group's scan:
 * once many names were removed on that file system, each name a plugin makes costs up to ~1 ms of kernel CPU for a
 * few µs of fuel (docs/SECURITY.md, "Rates are approximations"). A journal shows as /proc/fs/jbd2/<device>-8.
 * False where it cannot tell (not Linux, no /sys).
 */
export function onUnjournaledExt4(path: string): boolean {
  try {
    if (statfsSync(path).type !== EXT4_SUPER_MAGIC) return false;
    const dev = statSync(path, { bigint: true }).dev;
    // glibc's gnu_dev_major / gnu_dev_minor.
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    const uevent = readFileSync(`/sys/dev/block/${major}:${minor}/uevent`, 'utf8');
    const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
    return name !== undefined && !existsSync(`/proc/fs/jbd2/${name}-8`);
  } catch {
    return false;
  }
}
