import type { Logger } from 'pino';
import type { HostApi } from '../../runtime/host-api.js';
import type { LoadPlan, PoolSettings } from '../backend.js';
import { WARM_RUNNER_ID, WarmPool, warmSpec } from '../pool/warm-pool.js';
import type { TenantCgroupSlot } from '../process/cgroup.js';
import type { HostSession } from '../shared/session.js';
import type { UidRange } from '../shared/uid-pool.js';
import { ContainerRunner } from './container-runner.js';
import { WARM_ENTRYPOINT } from './container-spec.js';
import type { EngineClient } from './engine-client.js';
import { containerLabels, LABEL_POOL } from './labels.js';

export type ContainerRuntime = 'runc' | 'runsc';

/**
 * Whether a plan may be given a warm container of its runtime's pool: only when everything a container cannot get
 * after it was created is the pool's. No network (NetworkMode is fixed at create; `none` cannot be connected
 * later), no data directory (a bind mount and the leased group it runs as are fixed at create), the pool's
 * `tmpfs_mb` (the tmpfs sizes, /dev/shm and the file-size ulimit are fixed at create); under runsc also the pool's
 * memory, CPU and pids, which gVisor cannot update. WASM and native plugins both fit: a container's runner never
 * reads the plugin's image (the host sends the checked bytes in the Welcome, and a native library's private copy
 * goes to the /work tmpfs, sized alike for every plugin), so the bare runner image runs either as it would run
 * the plugin's own. Any other plan starts a fresh container as before: nothing is faked.
 */
export function fitsContainerPool(plan: LoadPlan, pool: PoolSettings): boolean {
  const l = plan.limits;
  const p = pool.limits;
  return (
    pool.container[plan.containerRuntime] > 0 &&
    !plan.grants.network &&
    plan.grants.filesystem === undefined &&
    l.tmpfsMb === p.tmpfsMb &&
    (plan.containerRuntime === 'runc' ||
      (l.memoryMb === p.memoryMb && l.cpus === p.cpus && l.pids === p.pids))
  );
}

/** What a warm container's link answers before it has a plugin: its log lines go to the host's log, nothing else. */
function warmHost(log: (level: number, message: string) => void): HostApi {
  return new Proxy({} as HostApi, {
    get: (_, name) =>
      name === 'log'
        ? log
        : () => {
            throw new Error('a warm runner has no plugin: it may not call the host');
          },
  });
}

export interface ContainerPoolOptions {
  settings: PoolSettings;
  runtime: ContainerRuntime;
  session: HostSession;
  logger: Logger;
  runtimeDir: string;
  startTimeoutMs: number;
  engine: () => EngineClient;
  /** The runner image (built or found once per engine). */
  runnerImage: () => Promise<string>;
  /** The tenant's cgroup slot (cgroupfs engines), or undefined. */
  tenantCgroup: () => Promise<TenantCgroupSlot | undefined>;
  runnerUids?: UidRange | undefined;
  /** The backend's `runnerCommand` (tests' hostile programs); default: the runner with the WASM runtime preloaded. */
  command?: string[] | undefined;
}

/**
 * Container mode's warm pool of one runtime (`[sandbox.pool] runc = N`, `runsc = N`): containers made from the bare
 * runner image by the same recipe as a plugin's (containerSpec) with the host's `[limits]`, started, connected and
 * authenticated, sent nothing. Their labels are the session's (so the sweep of a dead host's containers and
 * the host's close find them), `reed.plugin.id=reed-warm-runner` and `reed.pool=<runtime>`; named as a
 * fresh container of their sandbox directory is (`reed-<session>-<dir>`: the name does not carry the plugin).
 */
export function containerPool(o: ContainerPoolOptions): WarmPool<ContainerRunner> {
  const limits = o.settings.limits;
  const spec = warmSpec(limits);
  return new WarmPool<ContainerRunner>({
    size: o.settings.container[o.runtime],
    ttlMs: o.settings.ttlMs,
    kind: `container ${o.runtime}`,
    session: o.session.id,
    logger: o.logger,
    make: () => {
      const logger = o.logger.child({ sandbox: 'container', pool: o.runtime });
      return new ContainerRunner({
        pluginId: WARM_RUNNER_ID,
        limits,
        logger,
        session: o.session,
        spec,
        bytes: new Uint8Array(0),
        host: warmHost((level, message) => logger.debug({ level }, message)),
        runtimeDir: o.runtimeDir,
        startTimeoutMs: o.startTimeoutMs,
        engine: o.engine(),
        image: '',
        labels: {},
        runtime: o.runtime,
        network: false,
        dataDir: undefined,
        runnerUids: o.runnerUids,
        command: o.command ?? [...WARM_ENTRYPOINT],
        warm: true,
        prepare: async () => {
          const [image, tenantCgroup] = await Promise.all([o.runnerImage(), o.tenantCgroup()]);
          return {
            image,
            labels: {
              ...containerLabels({ id: WARM_RUNNER_ID, version: '' }, o.session, image),
              [LABEL_POOL]: o.runtime,
            },
            ...(tenantCgroup === undefined ? {} : { tenantCgroup }),
          };
        },
      });
    },
  });
}
