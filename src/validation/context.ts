import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { FileLimits } from '../discovery/plugin-inventory.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import type { PluginPermissions, SandboxMode } from '../manifest/types.js';

/** What the host grants at most. A manifest asking for more fails validation (`permission_denied_by_policy`). */
export interface HostPolicy {
  /** The most each permission may be. `events` lists the topic patterns (`*` wildcard) a plugin may use. */
  permissions: PluginPermissions;
  /** Sandbox modes a manifest may ask for. */
  allowedSandboxModes: SandboxMode[];
  /** The highest value each manifest limit may take. */
  limitCeilings: ResolvedLimits;
  /**
   * Whether a native plugin may run inside the host process (mode `none`) at all; even then only when signed by
   * a trusted key. Default false.
   */
  allowNativeInProcess?: boolean;
  /**
   * The most `[sandbox] replicas` a manifest may ask for (each replica is a runner with the plugin's limits, so a
   * plugin's resources are its limits times its replicas). Default DEFAULT_MAX_REPLICAS.
   */
  maxReplicas?: number;
}

/** `policy.max_replicas` when reed.toml does not say: a plugin may multiply its limits by at most this. */
export const DEFAULT_MAX_REPLICAS = 4;

/** Everything the rules judge a plugin against (the seed's ValidationContext, plus what the rules need). */
export interface ValidationContext {
  /** The plugin API this host implements. */
  apiVersion: string;
  /** The host version `min_reed_version` is compared with. */
  reedVersion: string;
  /** Plugins already running in the host; they satisfy dependencies. */
  loadedPlugins: LoadedPlugin[];
  /** Capabilities the host provides; `requirements.capabilities` must be among them. */
  systemCapabilities: string[];
  policy: HostPolicy;
  fileLimits: FileLimits;
}
