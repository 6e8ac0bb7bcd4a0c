import { existsSync } from 'node:fs';
import type { BackendFactory } from '../backend.js';
import { LazySandbox } from '../lazy-sandbox.js';
import { runnerPayload } from '../shared/runner-payload.js';
import { sweepOrphans } from '../shared/session.js';
import { SupervisedSandbox, type Supervision } from '../supervisor.js';
import { ContainerRunner } from './container-runner.js';
import { type Dockerode, defaultEngineClient, engineClientOf } from './dockerode-client.js';
import type { EngineClient } from './engine-client.js';
import { ensurePluginImage, ensureRunnerImage } from './images.js';
import { containerLabels } from './labels.js';
import { sweepContainers } from './sweep.js';

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
}

/** Mode `container`: a supervised sandbox-runner in a hardened per-plugin container, built from the plugin's directory. */
export const containerBackend: BackendFactory<ContainerBackendOptions> = (context) => {
  const { options, settings } = context;
  let client: EngineClient | undefined = options.docker && engineClientOf(options.docker);
  /** The engine client, made on first use. */
  const engine = () => {
    client ??= defaultEngineClient(30_000);
    return client;
  };
  return {
    sandbox(plan, host) {
      const { pluginId, limits } = plan;
      return new LazySandbox(pluginId, 'container', async () => {
        const { spec, bytes } = await runnerPayload(plan, context);
        const logger = context.logger.child({ sandbox: 'container' });
        const images = { docker: engine(), logger: context.logger };
        // ensureRunnerImage hashes once per engine, and forgets a failure (the engine may answer next time).
        const runnerImage = options.runnerImage ?? (await ensureRunnerImage(images));
        const pluginImage = await ensurePluginImage(images, runnerImage, plan.root, pluginId);
        const supervision = { startTimeoutMs: 30_000, ...options.supervision };
        const common = { pluginId, limits, logger, session: context.session };
        return new SupervisedSandbox({
          ...common,
          mode: 'container',
          supervision,
          createRunner: () =>
            new ContainerRunner({
              ...common,
              spec,
              bytes,
              host,
              runtimeDir: settings.runtimeDir,
              startTimeoutMs: supervision.startTimeoutMs,
              engine: images.docker,
              image: pluginImage,
              runtime: plan.containerRuntime,
              network: plan.grants.network,
              dataDir: plan.grants.filesystem,
              runnerUids: settings.runnerUids,
              ...(options.runnerCommand === undefined ? {} : { command: options.runnerCommand }),
              labels: containerLabels({ id: pluginId, version: plan.version }, context.session, pluginImage),
            }),
        });
      });
    },
    /**
     * Runner directories, and containers that dead hosts left, when a Docker engine is there to ask (quickly: a
     * host without Docker, or with one that does not answer, starts all the same).
     */
    async sweep() {
      await sweepOrphans(settings.runtimeDir, context.logger);
      const injected = options.docker !== undefined;
      if (!injected && process.env.DOCKER_HOST === undefined && !existsSync('/var/run/docker.sock')) return;
      const quick = injected ? engine() : defaultEngineClient(3_000);
      await sweepContainers(quick, context.logger).catch((error: unknown) =>
        context.logger.debug({ err: error }, 'no Docker engine to sweep'),
      );
    },
  };
};
