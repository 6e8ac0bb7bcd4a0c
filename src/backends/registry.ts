import type { SandboxMode } from '../manifest/types.js';
import type { TenantIdentity } from '../tenant-quotas.js';
import type { BackendContext, BackendFactory, SandboxBackend } from './backend.js';
import { type ContainerBackendOptions, containerBackend } from './container/backend.js';
import { inProcessBackend } from './in-process/backend.js';
import { type ProcessBackendOptions, processBackend } from './process/backend.js';

/** Every backend's options together: what an embedder may pass (PluginHostOptions carries them). */
export type BackendOptions = ProcessBackendOptions &
  ContainerBackendOptions & {
    /**
     * The tenant the host serves: every backend holds its sandboxes to the tenant's `memory_mb` and `cpu_weight`
     * together (a cgroup per tenant, a CgroupParent, summed WASM memory), mode none also to `fuel_per_second`.
     */
    tenant?: TenantIdentity;
  };

/**
 * The sandbox backends by mode: the one place the host learns which exist. Adding a backend is a folder under
 * src/backends/ and an entry here (docs/ARCHITECTURE.md, "Add a backend").
 */
export const BACKENDS: { readonly [M in SandboxMode]: BackendFactory<BackendOptions> } = {
  none: inProcessBackend,
  process: processBackend,
  container: containerBackend,
};

/** One host's backends, made once; each keeps its own state (a Docker client, say) for the host's life. */
export function createBackends(context: BackendContext<BackendOptions>): Map<SandboxMode, SandboxBackend> {
  return new Map(
    (Object.keys(BACKENDS) as SandboxMode[]).map((mode) => [mode, BACKENDS[mode](context)] as const),
  );
}
