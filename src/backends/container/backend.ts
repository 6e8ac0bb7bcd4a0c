import { existsSync } from 'node:fs';
import type { TenantIdentity } from '../../tenant-quotas.js';
import type { BackendFactory } from '../backend.js';
import { LazySandbox } from '../lazy-sandbox.js';
import type { WarmPool } from '../pool/warm-pool.js';
import { cgroupName, sweepCgroups, TenantCgroupSlot } from '../process/cgroup.js';
import { replicated } from '../replica-set.js';
import { runnerPayload } from '../shared/runner-payload.js';
import { sweepOrphans } from '../shared/session.js';
import { within } from '../shared/within.js';
import { SupervisedSandbox, type Supervision } from '../supervisor.js';
import { type ContainerRuntime, containerPool, fitsContainerPool } from './container-pool.js';
import { ContainerRunner, type ContainerRunnerOptions } from './container-runner.js';
import { type Dockerode, defaultEngineClient, engineClientOf } from './dockerode-client.js';
import type { EngineClient } from './engine-client.js';
import { ensurePluginImage, ensureRunnerImage } from './images.js';
import { containerLabels } from './labels.js';
import { listManagedContainers, localEngineSocket, sweepContainers, sweepListed } from './sweep.js';

export interface ContainerBackendOptions {
  /** Supervision settings (deadlines, restarts, breaker). The start timeout defaults to 30 s here. */
  supervision?: Partial<Supervision>;
  /** The program inside the container instead of the runner image's (tests use hostile ones). */
  runnerCommand?: string[];
  /**
   * The image plugin images build on, instead of the runner image built from this package (one made FROM it, with
   * libraries a native plugin needs, or test fixtures). Default: `ensureRunnerImage`.
   */
  runnerImage?: string;
  /**
   * The Docker client (another engine, TLS, a shorter timeout), wrapped in an engine client. Default: the engine
   * at `$DOCKER_HOST` or /var/run/docker.sock, with a 30 s timeout per request.
   */
  docker?: Dockerode;
  /**
   * The tenant the host serves: its containers go under a cgroup of its own (CgroupParent) with its memory_mb and
   * cpu_weight, where the engine's cgroup driver is cgroupfs and the host can make the cgroup (same machine, root).
   */
  tenant?: TenantIdentity;
}

/** The start-up sweep: each request to the engine, and the whole sweep (a host's start waits for it). */
const SWEEP_REQUEST_MS = 3_000;
const SWEEP_MS = 30_000;

/** Mode `container`: a supervised sandbox-runner in a hardened per-plugin container, built from the plugin's directory. */
export const containerBackend: BackendFactory<ContainerBackendOptions> = (context) => {
  const { options, settings } = context;
  let client: EngineClient | undefined = options.docker && engineClientOf(options.docker);
  /** The engine client, made on first use. */
  const engine = () => {
    client ??= defaultEngineClient(30_000);
    return client;
  };
  const tenant = options.tenant;
  const slot =
    tenant === undefined
      ? undefined
      : new TenantCgroupSlot(cgroupName(context.session, `t-${tenant.id}`), {
          memoryMb: tenant.quotas?.memory_mb,
          cpuWeight: tenant.quotas?.cpu_weight,
          tenant: tenant.id,
        });
  let driver: Promise<string> | undefined;
  /**
   * The tenant's cgroup for the containers, when the engine's driver is cgroupfs: a cgroup path the host makes
   * itself, with the limits, before the engine puts containers under it. A systemd driver takes only a slice
   * name, whose limits systemd keeps (docs/TENANTS.md): not supported, said once.
   */
  const tenantSlot = async (docker: EngineClient): Promise<TenantCgroupSlot | undefined> => {
    if (slot === undefined) return undefined;
    driver ??= docker.cgroupDriver().catch(() => 'unknown');
    const name = await driver;
    if (name === 'cgroupfs') return slot;
    if (!warned) {
      warned = true;
      context.logger.warn(
        { tenant: tenant?.id, cgroupDriver: name },
        `tenant "${tenant?.id}": the Docker engine's cgroup driver is ${name}, not cgroupfs; its containers are not held to the tenant's memory_mb and cpu_weight together (each keeps its own limits)`,
      );
    }
    return undefined;
  };
  let warned = false;
  const supervisionOf = () => ({ startTimeoutMs: 30_000, ...options.supervision });
  /** `[sandbox.pool] runc = N`, `runsc = N`: a warm pool per runtime (container-pool.ts); none by default. */
  const pools = new Map<ContainerRuntime, WarmPool<ContainerRunner>>();
  for (const runtime of ['runc', 'runsc'] as const) {
    const pool = settings.pool;
    if (pool === undefined || pool.container[runtime] <= 0) continue;
    pools.set(
      runtime,
      containerPool({
        settings: pool,
        runtime,
        session: context.session,
        logger: context.logger,
        runtimeDir: settings.runtimeDir,
        startTimeoutMs: supervisionOf().startTimeoutMs,
        engine,
        runnerImage: async () =>
          options.runnerImage ?? (await ensureRunnerImage({ docker: engine(), logger: context.logger })),
        tenantCgroup: () => tenantSlot(engine()),
        runnerUids: settings.runnerUids,
        command: options.runnerCommand,
      }),
    );
  }
  return {
    sandbox(plan, host) {
      const { pluginId, limits } = plan;
      return new LazySandbox(pluginId, 'container', async () => {
        const { spec, bytes } = await runnerPayload(plan, context);
        const logger = context.logger.child({ sandbox: 'container' });
        const images = { docker: engine(), logger: context.logger };
        // ensureRunnerImage hashes once per engine, and forgets a failure (the engine may answer next time).
        const runnerImage = options.runnerImage ?? (await ensureRunnerImage(images));
        const pool = pools.get(plan.containerRuntime);
        const fits =
          pool !== undefined && settings.pool !== undefined && fitsContainerPool(plan, settings.pool);
        // The plugin's image, built once: before the start, unless a warm container is ready for it now (a start
        // that finds none later builds it then: `prepare`).
        let built: Promise<string> | undefined;
        const pluginImage = () => {
          built ??= ensurePluginImage(images, runnerImage, plan.root, pluginId);
          return built;
        };
        if (!fits || pool.ready === 0) await pluginImage();
        const supervision = { startTimeoutMs: 30_000, ...options.supervision };
        const tenantCgroup = await tenantSlot(images.docker);
        const common = { pluginId, limits, logger, session: context.session };
        const runnerOptions: ContainerRunnerOptions = {
          ...common,
          spec,
          bytes,
          host,
          runtimeDir: settings.runtimeDir,
          startTimeoutMs: supervision.startTimeoutMs,
          engine: images.docker,
          image: '',
          labels: {},
          prepare: async () => {
            const image = await pluginImage();
            return {
              image,
              labels: containerLabels({ id: pluginId, version: plan.version }, context.session, image),
            };
          },
          runtime: plan.containerRuntime,
          network: plan.grants.network,
          dataDir: plan.grants.filesystem,
          runnerUids: settings.runnerUids,
          ...(options.runnerCommand === undefined ? {} : { command: options.runnerCommand }),
          ...(tenantCgroup === undefined ? {} : { tenantCgroup }),
        };
        // `[sandbox] replicas` above 1: as many supervised containers behind one ReplicaSet; 1: this sandbox itself.
        return replicated(
          plan,
          () =>
            new SupervisedSandbox({
              ...common,
              mode: 'container',
              supervision,
              idleTimeoutMs: plan.idleTimeoutMs ?? 0,
              // Every start (the first, a restart, a start after scale-to-zero) takes a warm container when one is
              // ready (a plan of the pool's shape: fitsContainerPool).
              createRunner: () => {
                const warm = fits ? pool.take() : undefined;
                if (warm === undefined) return new ContainerRunner(runnerOptions);
                warm.assign(runnerOptions, () => pool?.handedOut());
                return warm;
              },
            }),
        );
      });
    },
    /**
     * Runner directories, and containers that dead hosts left, when a Docker engine is there to ask (quickly: a
     * host without Docker, or with one that does not answer, starts all the same).
     */
    async sweep() {
      await sweepOrphans(settings.runtimeDir, context.logger);
      const injected = options.docker !== undefined;
      const socket = !injected && process.env.DOCKER_HOST === undefined ? localEngineSocket() : undefined;
      if (socket !== undefined && !existsSync(socket)) return;
      // The local engine's listing is read without dockerode, which is loaded only to inspect or remove (on the same
      // socket): a host whose plugins are not in containers then never loads it (nor its dependencies: a third of a
      // host's heap).
      const sweeping =
        socket !== undefined
          ? listManagedContainers(socket, SWEEP_REQUEST_MS).then((listed) => {
              let client: EngineClient | undefined;
              return sweepListed(
                listed,
                () => (client ??= defaultEngineClient(SWEEP_REQUEST_MS, socket)),
                context.logger,
              );
            })
          : sweepContainers(injected ? engine() : defaultEngineClient(SWEEP_REQUEST_MS), context.logger);
      // Swept: the engine answered and removed every container of a dead host it listed, within SWEEP_MS (dockerode's
      // timeout counts idle time only: an engine answering a byte now and then would otherwise hold the host's start).
      const swept = await within(
        sweeping.then(({ failed }) => failed === 0),
        SWEEP_MS,
        `the engine did not finish the sweep within ${SWEEP_MS} ms`,
      ).catch((error: unknown) => {
        context.logger.debug({ err: error }, 'no Docker engine to sweep');
        return false;
      });
      // Then the tenants' cgroups (CgroupParent) those containers were in: only once the engine removed them,
      // never from under containers it still knows.
      if (swept) sweepCgroups(context.logger);
    },
    warm() {
      for (const pool of pools.values()) pool.start();
    },
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.close()));
    },
  };
};
