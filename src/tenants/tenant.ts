import type { Readable } from 'node:stream';
import type { CallOptions, CallOutcome } from '../backends/sandbox.js';
import type { PluginHost, RemoveOptions } from '../host/plugin-host.js';
import type { PluginStatus } from '../host/plugin-set.js';

/**
 * The contract between the tenant layer (src/tenants/: who owns which plugins, with what quotas) and the API on top
 * of it (src/server/). A tenant is a namespace of plugins with its own PluginHost: its own sandboxes, storage,
 * filesystem directory, installed plugins, labels and logs, so tenant A's `seo` and tenant B's `seo` share nothing.
 * The routes of before tenants existed (/v1/plugins/...) are the default tenant's.
 */
export const DEFAULT_TENANT = 'default';

/** A tenant's id: what may appear in a route, a directory name, a cgroup name and a Docker label. */
export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface Tenant {
  readonly id: string;
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
}

export interface TenantDirectory {
  get(id: string): Tenant | undefined;
  list(): Tenant[];
  close(): Promise<void>;
}
