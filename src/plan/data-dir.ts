import { chmodSync, lstatSync, mkdirSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, normalize, sep } from 'node:path';
import { ReedError } from '../errors.js';
import { DATA_FILES_DIR, pluginDataDir } from '../manifest/data-dir.js';

/**
 * Makes (or checks) a plugin's data directory, `<data_dir>/files/<plugin id>`, before its sandbox starts, and
 * returns its path. Never follows a link: every component of the path, from `/` down, is looked at with lstat and
 * must be a real directory, owned by root or the host's user, and writable by no one else (a sticky directory
 * such as /tmp excepted); a missing one is made, one level at a time, and looked at again. No one but root and
 * the host's user can then swap a component for a link between this check and its use (a bind mount, WASI's
 * open). `<data_dir>/files` is the host user's (root's, when the host runs as root) and 0700: no runner uid can
 * traverse it to another plugin's directory (runners see only their own, mounted). The plugin's directory is 0777:
 * process mode gives each sandbox a uid of its own, and every one must keep using the files (docs/SECURITY.md).
 *
 * Kept across restarts, replaces and upgrades, and by PluginHost.remove: only the operator removes it.
 * Throws `data_dir_unavailable` naming the path and what is wrong with it.
 */
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
  // files/: ours alone, 0700 (set again if someone widened it).
  const filesStat = made(pluginId, files, 0o700);
  checkComponent(pluginId, files, filesStat, uid, true);
  if ((filesStat.mode & 0o7777) !== 0o700) chmodOrThrow(pluginId, files, 0o700);
  // files/<id>/: root's or ours, a real directory, 0777 inside (umask does not apply to chmod).
  const dirStat = made(pluginId, path, 0o777);
  if (!dirStat.isDirectory() || dirStat.isSymbolicLink()) {
    throw unavailable(pluginId, path, 'it is not a directory (a link or a file is never followed)');
  }
  if (dirStat.uid !== uid && dirStat.uid !== 0) {
    throw unavailable(pluginId, path, `it belongs to uid ${dirStat.uid}, not to root or the host's user`);
  }
  if ((dirStat.mode & 0o7777) !== 0o777) chmodOrThrow(pluginId, path, 0o777);
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
