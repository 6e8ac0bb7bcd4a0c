import type { SandboxMode } from '../manifest/types.js';
import type { TenantIdentity } from '../tenant-quotas.js';
import type { BackendContext, BackendFactory, SandboxBackend } from './backend.js';
import { type ContainerBackendOptions, containerBackend } from './container/backend.js';
import { inProcessBackend } from './in-process/backend.js';
import { type ProcessBackendOptions, processBackend } from './process/backend.js';
import { type SwarmBackendOptions, swarmBackend } from './swarm/backend.js';

/** Every backend's options together: what an embedder may pass (PluginHostOptions carries them). */
export type BackendOptions = ProcessBackendOptions &
  ContainerBackendOptions & {
    /**
     * The tenant the host serves: every backend holds its sandboxes to the tenant's `memory_mb` and `cpu_weight`
     * together (a cgroup per tenant, a CgroupParent, summed WASM memory), mode none also to `fuel_per_second`.
     */
    tenant?: TenantIdentity;
    /**
     * Run container-mode plugins as services of a Docker Swarm instead of containers of one engine (the swarm
     * backend, docs/SCALE.md): the manager's client and the registry every node pulls from.
     */
    swarm?: SwarmBackendOptions;
  };

/**
 * The sandbox backends by mode: the one place the host learns which exist. Adding a backend is a folder under
 * src/backends/ and an entry here (docs/ARCHITECTURE.md, "Add a backend").
 */
export const BACKENDS: { readonly [M in SandboxMode]: BackendFactory<BackendOptions> } = {
  none: inProcessBackend,
  process: processBackend,
  // With `swarm`, container mode's plugins run on the swarm: where containers run is the operator's choice.
  container: (context) =>
    context.options.swarm === undefined ? containerBackend(context) : swarmBackend(context),
};

/** One host's backends, made once; each keeps its own state (a Docker client, say) for the host's life. */
export function createBackends(context: BackendContext<BackendOptions>): Map<SandboxMode, SandboxBackend> {
  return new Map(
    (Object.keys(BACKENDS) as SandboxMode[]).map((mode) => [mode, BACKENDS[mode](context)] as const),
  );
}
