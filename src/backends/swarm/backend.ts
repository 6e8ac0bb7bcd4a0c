import { ReedError } from '../../errors.js';
import type { TlsListenerMaterial } from '../../transport/tls-transport.js';
import type { BackendFactory } from '../backend.js';
import type { Dockerode } from '../container/dockerode-client.js';
import { engineError } from '../container/engine-client.js';
import { ensureRunnerImage } from '../container/images.js';
import { LABEL_MANAGED, LABEL_SESSION, ownContainerId } from '../container/labels.js';
import { sweepContainers } from '../container/sweep.js';
import { LazySandbox } from '../lazy-sandbox.js';
import { replicated } from '../replica-set.js';
import { runnerPayload } from '../shared/runner-payload.js';
import { sweepOrphans } from '../shared/session.js';
import { within } from '../shared/within.js';
import { SupervisedSandbox, type Supervision } from '../supervisor.js';
import { publishImage } from './registry.js';
import { LABEL_SWARM_KIND } from './service-spec.js';
import { type SwarmReach, SwarmRunner } from './swarm-runner.js';
import { removeSwarmResources, sweepSwarm } from './sweep.js';

/**
 * Container mode on a Docker Swarm (docs/SCALE.md): given, container-mode plugins run as Swarm services of the
 * manager `docker` instead of containers of one engine. An operator's choice of where containers run, not a
 * plugin's: the manifest's mode stays `container`.
 */
export interface SwarmBackendOptions {
  /** The Docker client of a swarm manager (its engine builds the runner image and makes the services). */
  docker: Dockerode;
  /** `host[:port]` of the registry every node pulls from (the runner image is pushed there by content hash). */
  registry: string;
  /**
   * How runners reach the orchestrator (swarm-runner.ts, SwarmReach). Default: the orchestrator runs in a
   * container of the manager's engine (found from /proc/self/mountinfo), which joins each runner's network.
   * `{ relay: ADDRESS }`: the orchestrator runs outside Docker and listens on ADDRESS, which the manager's
   * containers reach; a relay container per runner stands in for it on the runner's network (tests).
   */
  relay?: string;
  /** More placement constraints for every runner's task (`node.hostname==...`; tests pin a node). */
  constraints?: string[];
  /** Supervision settings; the start timeout defaults to 120 s (a node may pull the image first). */
  supervision?: Partial<Supervision>;
}

const RUNNER_START_MS = 120_000;
/** The most each part of the start-up sweep may hold the host's start (a manager may have many services). */
const SWEEP_MS = 60_000;

/** Mode `container` on a swarm: a supervised runner per plugin, each a Swarm service over the TLS transport. */
export const swarmBackend: BackendFactory<{ swarm?: SwarmBackendOptions }> = (context) => {
  const options = context.options.swarm as SwarmBackendOptions;
  const { settings } = context;
  const docker = options.docker;
  const pending = new Set<Promise<unknown>>();
  let image: Promise<string> | undefined;
  let tls: Promise<TlsListenerMaterial> | undefined;

  /** The runner image, built on the manager and pushed by content hash: once per host (a failure is forgotten). */
  const runnerImage = (pluginId: string): Promise<string> => {
    image ??= (async () => {
      if (typeof options.registry !== 'string' || options.registry === '')
        throw new ReedError(
          'sandbox_start_failed',
          `plugin "${pluginId}": the swarm backend has no registry: every node pulls the runner image from one (swarm.registry, host:port)`,
          { pluginId },
        );
      const info = await docker.info().catch((error: unknown) => {
        throw engineError(
          error,
          `plugin "${pluginId}": the swarm manager's Docker engine`,
          'sandbox_start_failed',
        );
      });
      const swarm = (info as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } }).Swarm;
      if (swarm?.LocalNodeState !== 'active' || swarm.ControlAvailable !== true)
        throw new ReedError(
          'sandbox_start_failed',
          `plugin "${pluginId}": the swarm backend's Docker engine is not a swarm manager (swarm state ${swarm?.LocalNodeState ?? 'unknown'}); give it a manager's client, or run docker swarm init`,
          { pluginId },
        );
      const local = await ensureRunnerImage({ docker, logger: context.logger });
      return publishImage(docker, local, options.registry).catch((error: ReedError) => {
        throw new ReedError(error.code ?? 'image_push_failed', `plugin "${pluginId}": ${error.message}`, {
          pluginId,
          cause: error,
        });
      });
    })();
    image.catch(() => {
      image = undefined;
    });
    return image;
  };

  /** The orchestrator's CA and server certificate, made in memory on first use (src/pki/). */
  const material = (): Promise<TlsListenerMaterial> => {
    tls ??= (async () => {
      const { OrchestratorCa, ORCHESTRATOR_SERVERNAME } = await import('../../pki/orchestrator-ca.js');
      const ca = await OrchestratorCa.create();
      const credentials = await ca.issueServer({ dnsNames: [ORCHESTRATOR_SERVERNAME] });
      return {
        credentials,
        caPem: ca.certPem,
        servername: ORCHESTRATOR_SERVERNAME,
        host: options.relay ?? '0.0.0.0',
      };
    })();
    return tls;
  };

  const reach = (pluginId: string): SwarmReach => {
    if (options.relay !== undefined) return { kind: 'relay', hostAddress: options.relay };
    const containerId = ownContainerId();
    if (containerId === undefined)
      throw new ReedError(
        'sandbox_start_failed',
        `plugin "${pluginId}": the swarm backend's runners cannot reach this orchestrator: it does not run in a container of the manager's engine (to join each runner's network), and no relay address is set (swarm.relay)`,
        { pluginId },
      );
    return { kind: 'container', containerId };
  };

  return {
    sandbox(plan, host) {
      const { pluginId, limits } = plan;
      // `[sandbox] replicas`: that many runners, each a service of its own (replica-set.ts).
      return replicated(
        plan,
        () =>
          new LazySandbox(pluginId, 'container', async () => {
            // What a swarm task cannot be given: refused by name rather than run half-way.
            if (plan.type === 'native')
              throw new ReedError(
                'sandbox_start_failed',
                `plugin "${pluginId}" is native (${plan.entryPoint}): the swarm backend cannot run native plugins, a Swarm task's /work is noexec (docs/SCALE.md)`,
                { pluginId },
              );
            if (plan.grants.filesystem !== undefined || plan.grants.network)
              throw new ReedError(
                'sandbox_start_failed',
                `plugin "${pluginId}" is granted ${plan.grants.network ? 'permissions.network' : 'permissions.filesystem'}: the swarm backend gives a runner neither a data directory nor a route out (docs/SCALE.md)`,
                { pluginId },
              );
            const [{ spec, bytes }, ref, tlsMaterial] = await Promise.all([
              runnerPayload(plan, context),
              runnerImage(pluginId),
              material(),
            ]);
            const way = reach(pluginId);
            const logger = context.logger.child({ sandbox: 'swarm' });
            const supervision = { startTimeoutMs: RUNNER_START_MS, ...options.supervision };
            const common = { pluginId, limits, logger, session: context.session };
            /** Runners made for this sandbox so far: only the first is spread (SwarmRunnerOptions.spread). */
            let made = 0;
            return new SupervisedSandbox({
              ...common,
              mode: 'container',
              supervision,
              idleTimeoutMs: plan.idleTimeoutMs ?? 0,
              createRunner: () =>
                new SwarmRunner({
                  ...common,
                  spec,
                  bytes,
                  host,
                  version: plan.version,
                  runtimeDir: settings.runtimeDir,
                  startTimeoutMs: supervision.startTimeoutMs,
                  docker,
                  image: ref,
                  runtime: plan.containerRuntime,
                  tls: tlsMaterial,
                  reach: way,
                  constraints: options.constraints,
                  pending,
                  spread: made++ === 0,
                }),
            });
          }),
      );
    },
    /** Runner directories of dead hosts here, and what dead orchestrators left on the swarm (by labels). */
    async sweep() {
      await sweepOrphans(settings.runtimeDir, context.logger);
      // Each within SWEEP_MS: a manager that answers slowly (or a byte now and then) must not hold the host's start.
      await within(
        sweepSwarm(docker, context.logger),
        SWEEP_MS,
        `the swarm's sweep took over ${SWEEP_MS} ms`,
      ).catch((error: unknown) =>
        context.logger.warn({ err: error }, 'could not sweep the swarm; the next start retries'),
      );
      // Then the manager's containers of dead hosts: their relays (and task containers still there), by the same labels.
      await within(
        sweepContainers(docker, context.logger),
        SWEEP_MS,
        `the sweep of the manager's containers took over ${SWEEP_MS} ms`,
      ).catch((error: unknown) =>
        context.logger.warn(
          { err: error },
          'could not sweep the swarm manager\u2019s containers; the next start retries',
        ),
      );
    },
    /** After every sandbox stopped: what their runners' removal left (networks still draining), then the session's. */
    async close() {
      await Promise.allSettled([...pending]);
      const session = `${LABEL_SESSION}=${context.session.id}`;
      const relays = await docker
        .listContainers({
          all: true,
          filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SWARM_KIND}=relay`, session] },
        })
        .catch(() => []);
      for (const relay of relays)
        await docker
          .getContainer(relay.Id)
          .remove({ force: true })
          .catch(() => {});
      await removeSwarmResources(docker, [session]).catch((error: unknown) =>
        context.logger.warn(
          { err: error },
          'could not remove all of this host\u2019s swarm services, networks and secrets',
        ),
      );
    },
  };
};
