/**
 * A tenant's quotas (docs/TENANTS.md), here in the ground layer because every layer reads them: the tenant registry
 * (src/tenants/) enforces the admission quotas, the backends (src/backends/) the memory and CPU ones. The keys are
 * spelled as in reed.toml's `[tenants.<id>.quotas]`, tenant.json and the admin API, so one name holds everywhere.
 * Every key is optional: an absent key is no limit.
 */
export interface TenantQuotas {
  /** Calls in flight at once across the tenant's plugins. */
  max_concurrent_calls?: number;
  /** Calls started per second (a token bucket refilled at this rate). */
  calls_per_second?: number;
  /** The token bucket's size: calls that may start at once after a quiet spell. Default: calls_per_second. */
  calls_burst?: number;
  /** Plugins the tenant may hold (loaded from its plugin_dirs or installed). */
  max_plugins?: number;
  /** Events its plugins emit per second on the tenant's event bus (a token bucket, burst the same). */
  events_per_second?: number;
  /** Storage bytes across its plugins (each entry's on-disk cost, as limits.storage_quota_bytes counts it). */
  storage_bytes?: number;
  /** Storage keys across its plugins. */
  storage_keys?: number;
  /**
   * Bytes in its plugins' data directories together (its `files/`): a file system of its own of that size, an ext4
   * image loop-mounted by the host (src/tenants/tenant-volume.ts). Needs a root host with loop devices (else
   * refused, never ignored); it may be raised, never lowered.
   */
  filesystem_bytes?: number;
  /** Memory across all its sandboxes (T-resources: a cgroup parent, CgroupParent, summed WASM memory). */
  memory_mb?: number;
  /** CPU share of its sandboxes (cgroup cpu.weight, 1-10000). */
  cpu_weight?: number;
  /** Mode none: WASM fuel its plugins may burn per second together. */
  fuel_per_second?: number;
  /**
   * Installs, upgrades, removals and reloads of its plugins per second (a token bucket of LIFECYCLE_BURST, or the
   * rate rounded up when larger). Absent: DEFAULT_LIFECYCLE_PER_SECOND for every tenant but `default` (whose
   * lifecycle routes are the admin's), so that no tenant token restarts plugins in a loop.
   */
  lifecycle_per_second?: number;
}

/** The smallest quotas.filesystem_bytes taken (1 MiB): below it an ext4 file system is mostly its own metadata. */
export const MIN_FILESYSTEM_BYTES = 1024 * 1024;

/** The lifecycle_per_second of a tenant (but `default`) whose quotas do not set it: 12 a minute. */
export const DEFAULT_LIFECYCLE_PER_SECOND = 0.2;
/** The lifecycle bucket's size: a deploy's burst of installs passes, a loop of them does not. */
export const LIFECYCLE_BURST = 10;

export const TENANT_QUOTA_KEYS = [
  'max_concurrent_calls',
  'calls_per_second',
  'calls_burst',
  'max_plugins',
  'events_per_second',
  'storage_bytes',
  'storage_keys',
  'filesystem_bytes',
  'memory_mb',
  'cpu_weight',
  'fuel_per_second',
  'lifecycle_per_second',
] as const satisfies readonly (keyof TenantQuotas)[];

/** Who a PluginHost (and its backends) serves: `PluginHostOptions.tenant`, `BackendOptions.tenant`. */
export interface TenantIdentity {
  /** Matches TENANT_ID_PATTERN (src/tenants/tenant.ts). */
  id: string;
  quotas?: TenantQuotas;
}
