import type { Readable } from 'node:stream';
import type { CallOptions, CallOutcome } from '../backends/sandbox.js';
import type { PluginHost, RemoveOptions } from '../host/plugin-host.js';
import type { PluginStatus } from '../host/plugin-set.js';
import type { TenantQuotas } from '../tenant-quotas.js';

export type { TenantQuotas } from '../tenant-quotas.js';

/**
 * The contract between the tenant layer (src/tenants/: who owns which plugins, with what quotas) and the API on top
 * of it (src/server/). A tenant is a namespace of plugins with its own PluginHost: its own sandboxes, storage,
 * filesystem directory, installed plugins, labels and logs, so tenant A's `seo` and tenant B's `seo` share nothing.
 * The routes of before tenants existed (/v1/plugins/...) are the default tenant's.
 */
export const DEFAULT_TENANT = 'default';

/** A tenant's id: what may appear in a route, a directory name, a cgroup name and a Docker label. */
export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** What a tenant is made of: in reed.toml's `[tenants.<id>]`, in tenant.json, in `PUT /v1/admin/tenants/{tenant}`. */
export interface TenantSpec {
  /** Directories searched for the tenant's plugins (absolute). Default: none (only what is installed through the API). */
  plugin_dirs?: string[];
  quotas?: TenantQuotas;
}

/** What one plugin of a tenant has used since the registry started (calls, bytes) or holds now (storage). */
export interface PluginUsage {
  /** Calls by outcome: `ok` or the error's code. */
  calls: Record<string, number>;
  /** Wall time of its calls, milliseconds. */
  wallMs: number;
  /** WASM fuel its calls consumed (0 where fuel does not apply). */
  fuel: number;
  /** Call input and output bytes. */
  bytesIn: number;
  bytesOut: number;
  /** Storage bytes (on-disk cost) and keys it holds now. */
  storageBytes: number;
  storageKeys: number;
  /** Sandboxes started (first starts and restarts). */
  sandboxStarts: number;
}

export interface TenantUsage {
  tenant: string;
  /** When this accounting started (ISO 8601): the registry's start, or the tenant's creation. */
  since: string;
  plugins: Record<string, PluginUsage>;
  /** Every plugin's summed, and the denials by quota. */
  total: PluginUsage;
  /** Calls in flight now. */
  inFlight: number;
  /** `quota_exceeded` answers by quota name. */
  denied: Record<string, number>;
  quotas: TenantQuotas;
  /**
   * The tenant's own file system (quotas.filesystem_bytes), by statfs of its mount: bytes its files and
   * directories use, bytes left, and the quota. Absent for a tenant without one.
   */
  filesystem?: { usedBytes: number; availableBytes: number; limitBytes: number };
}

export interface Tenant {
  readonly id: string;
  /** Where it came from: reed.toml (`config`), the admin API (`runtime`), or the host of before tenants (`default`). */
  readonly origin: 'default' | 'config' | 'runtime';
  readonly spec: TenantSpec;
  /** The tenant's own host. The API goes through the methods below, which add the tenant's quotas and accounting. */
  readonly host: PluginHost;
  /** host.call behind the tenant's quotas (`quota_exceeded`) and with its accounting. */
  call(
    pluginId: string,
    fn: string,
    input?: Uint8Array | string,
    options?: CallOptions,
  ): Promise<CallOutcome>;
  /** host.install behind the tenant's plugin-count quota. */
  install(pluginId: string, archive: Readable): Promise<PluginStatus>;
  remove(pluginId: string, options?: RemoveOptions): Promise<string[]>;
  reload(pluginId: string): Promise<PluginStatus>;
  status(): PluginStatus[];
  usage(): TenantUsage;
}

export interface RemoveTenantOptions {
  /**
   * Delete its directory (storage, files, installed plugins, and any data earlier tenants of that id left) too.
   * Default false: its data is kept aside (`TenantDirectory.removedData`), never given to a later tenant of that id.
   */
  purge?: boolean;
}

/** Data a removed tenant left in `<data_dir>/tenants/<id>/` (a removal without purge), kept aside until purged. */
export interface RemovedTenantData {
  tenant: string;
  /** The removed tenant's generation; null for the `data` directory of a tenant of reed.toml or of a version before generations. */
  generation: string | null;
  /** Absolute. */
  path: string;
}

export interface TenantDirectory {
  get(id: string): Tenant | undefined;
  list(): Tenant[];
  /**
   * Creates a tenant at runtime (persisted under `<data_dir>/tenants/<id>/`, back after a restart) and starts its
   * host; with an id that exists and came from the API, updates its quotas and plugin_dirs (the host restarts).
   * `tenant_invalid` for a bad id or spec, `tenant_exists` for the default tenant or one from reed.toml.
   */
  create(id: string, spec: TenantSpec): Promise<Tenant>;
  /**
   * Stops its plugins and forgets it; its data is kept aside (`removedData`) unless `purge`. `tenant_not_found`;
   * `tenant_invalid` for the default or a reed.toml one.
   */
  remove(id: string, options?: RemoveTenantOptions): Promise<void>;
  /** The data removed tenants left (of every id, or of `id`): never handed to a later tenant of the same id. */
  removedData(id?: string): RemovedTenantData[];
  /** Deletes the data removed tenants of id `id` left; `tenant_not_found` when there is none. */
  purgeRemoved(id: string): Promise<RemovedTenantData[]>;
  /** `tenant_not_found` when there is no such tenant. */
  usage(id: string): TenantUsage;
  close(): Promise<void>;
}
