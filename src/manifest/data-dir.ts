import { join } from 'node:path';
import { ReedError } from '../errors.js';
import type { ResolvedLimits } from './limits.js';
import { PLUGIN_ID_PATTERN } from './schema.js';
import type { AccessLevel } from './types.js';

/**
 * The name a WASM plugin's data directory is preopened under: what its WASI program opens (`/data/notes.txt`), in
 * every mode. docs/ABI-wasm.md and README.md ("The data directory") say so.
 */
export const DATA_GUEST_NAME = '/data';

/**
 * A plugin's data directory as a runtime is given it (`permissions.filesystem` granted by the policy): the WASI
 * layer preopens `hostPath` as `guestName`, confines every path to it and enforces the quotas. The shape of the
 * WASI engine's `WasiFilesystem` (src/runtime/wasm/). `hostPath` is the directory as seen by the process running
 * the WASM: the host's own path in mode none, the fixed in-sandbox path in process and container modes.
 */
export interface FilesystemGrant {
  /** Absolute path of the plugin's private directory, as seen by the process running the WASM. */
  readonly hostPath: string;
  /** The preopen's name the guest sees: DATA_GUEST_NAME, unless the manifest's `[wasi] preopen` names another. */
  readonly guestName: string;
  /** `permissions.filesystem = "read"`: every write, create, delete and rename is refused. */
  readonly readOnly: boolean;
  /** `limits.disk_mb` in bytes; 0 = unlimited (never made from a manifest: limits are at least 1). */
  readonly diskBytes: number;
  /** `limits.max_files` (files, directories and links); 0 = unlimited (never made from a manifest). */
  readonly maxFiles: number;
}

/** The folder under `data_dir` that holds one directory per plugin. */
export const DATA_FILES_DIR = 'files';

/**
 * `<data_dir>/files/<plugin id>`: the one place the path is made. With tenants, the tenant becomes a component
 * here (`files/<tenant>/<plugin id>`), and nothing else changes. The id is asserted to be a plugin id (validation
 * already guarantees it): one path component, never `.`, `..` or empty.
 */
export function pluginDataDir(dataDir: string, pluginId: string): string {
  if (!new RegExp(PLUGIN_ID_PATTERN).test(pluginId)) {
    throw new ReedError(
      'plugin_invalid',
      `"${pluginId.slice(0, 200)}" is not a plugin id: no data directory is made for it`,
    );
  }
  return join(dataDir, DATA_FILES_DIR, pluginId);
}

/**
 * What a plugin asking `level` is given, its directory at `hostPath` (the host's path: a backend that runs the
 * plugin elsewhere gives the runtime its own path for it). Undefined for "none": no preopen, nothing mounted.
 */
export function filesystemGrant(
  level: AccessLevel,
  limits: Pick<ResolvedLimits, 'diskMb' | 'maxFiles'>,
  hostPath: string,
  guestName: string = DATA_GUEST_NAME,
): FilesystemGrant | undefined {
  if (level === 'none') return undefined;
  return {
    hostPath,
    guestName,
    readOnly: level === 'read',
    diskBytes: limits.diskMb * 1024 * 1024,
    maxFiles: limits.maxFiles,
  };
}
