import type { TenantIdentity } from '../../tenant-quotas.js';
import type { BackendFactory } from '../backend.js';
import { LazySandbox } from '../lazy-sandbox.js';
import { runnerPayload } from '../shared/runner-payload.js';
import { sweepOrphans } from '../shared/session.js';
import { DEFAULT_SUPERVISION, SupervisedSandbox, type Supervision } from '../supervisor.js';
import { cgroupName, sweepCgroups, TenantCgroupSlot } from './cgroup.js';
import { RunnerProcess } from './runner-process.js';

export interface ProcessBackendOptions {
  /** Supervision settings (deadlines, restarts, breaker). */
  supervision?: Partial<Supervision>;
  /** The command that starts a runner (tests use hostile ones). Default: Node with dist/sandbox-runner. */
  runnerCommand?: string[];
  /** The tenant the host serves: its runners' cgroups go under one of its own (memory_mb, cpu_weight). */
  tenant?: TenantIdentity;
}

/** Mode `process`: a supervised sandbox-runner child under bubblewrap, one per plugin. */
export const processBackend: BackendFactory<ProcessBackendOptions> = (context) => {
  const tenant = context.options.tenant;
  const slot =
    tenant === undefined
      ? undefined
      : new TenantCgroupSlot(cgroupName(context.session, `t-${tenant.id}`), {
          memoryMb: tenant.quotas?.memory_mb,
          cpuWeight: tenant.quotas?.cpu_weight,
          tenant: tenant.id,
        });
  return {
    sandbox(plan, host) {
      const { pluginId, limits } = plan;
      const { options, settings } = context;
      return new LazySandbox(pluginId, 'process', async () => {
        const { spec, bytes } = await runnerPayload(plan, context);
        const logger = context.logger.child({ sandbox: 'process' });
        const supervision = { ...DEFAULT_SUPERVISION, ...options.supervision };
        const common = { pluginId, limits, logger, session: context.session };
        return new SupervisedSandbox({
          ...common,
          mode: 'process',
          supervision,
          idleTimeoutMs: plan.idleTimeoutMs ?? 0,
          createRunner: () =>
            new RunnerProcess({
              ...common,
              spec,
              bytes,
              host,
              runtimeDir: settings.runtimeDir,
              ...(options.runnerCommand === undefined ? {} : { runnerCommand: options.runnerCommand }),
              ...(settings.runnerUids === undefined ? {} : { runnerUids: settings.runnerUids }),
              network: plan.grants.network,
              dataDir: plan.grants.filesystem,
              startTimeoutMs: supervision.startTimeoutMs,
              ...(slot === undefined ? {} : { tenantCgroup: slot }),
            }),
        });
      });
    },
    /** Runner directories (and the runners in them) and cgroups of hosts that died. */
    async sweep() {
      await sweepOrphans(context.settings.runtimeDir, context.logger);
      sweepCgroups(context.logger);
    },
  };
};
