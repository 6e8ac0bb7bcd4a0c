import type { ResolvedLimits } from '../../manifest/limits.js';
import type { HostApi } from '../../runtime/host-api.js';
import type { TenantIdentity } from '../../tenant-quotas.js';
import type { TlsListenerMaterial } from '../../transport/tls-transport.js';
import type { BackendFactory, LoadPlan, PoolSettings } from '../backend.js';
import { LazySandbox } from '../lazy-sandbox.js';
import { WARM_RUNNER_ID, WarmPool, warmSpec } from '../pool/warm-pool.js';
import { replicated } from '../replica-set.js';
import { runnerPayload } from '../shared/runner-payload.js';
import { sweepOrphans } from '../shared/session.js';
import { DEFAULT_SUPERVISION, SupervisedSandbox, type Supervision } from '../supervisor.js';
import { cgroupName, sweepCgroups, TenantCgroupSlot } from './cgroup.js';
import { RunnerProcess, type RunnerProcessOptions } from './runner-process.js';

export interface ProcessBackendOptions {
  /** Supervision settings (deadlines, restarts, breaker). */
  supervision?: Partial<Supervision>;
  /** The command that starts a runner (tests use hostile ones). Default: Node with dist/sandbox-runner. */
  runnerCommand?: string[];
  /** The tenant the host serves: its runners' cgroups go under one of its own (memory_mb, cpu_weight). */
  tenant?: TenantIdentity;
  /**
   * How runners dial back: `unix` (default), the socket in the sandbox directory; `tls`, TCP with TLS on 127.0.0.1
   * (src/transport/tls-transport.ts), the network transport tested and measured through process mode. With `tls`
   * the runner keeps the host's network namespace (docs/SECURITY.md).
   */
  runnerTransport?: 'unix' | 'tls';
}

/**
 * The orchestrator's CA (made on first use, kept in memory) and one server certificate for 127.0.0.1. The CA code
 * (pkijs) is loaded then, not with the backend.
 */
function localTls(): () => Promise<TlsListenerMaterial> {
  let material: Promise<TlsListenerMaterial> | undefined;
  return () => {
    material ??= (async () => {
      const { OrchestratorCa, ORCHESTRATOR_SERVERNAME } = await import('../../pki/orchestrator-ca.js');
      const ca = await OrchestratorCa.create();
      const credentials = await ca.issueServer({
        dnsNames: [ORCHESTRATOR_SERVERNAME],
        ipAddresses: ['127.0.0.1'],
      });
      return { credentials, caPem: ca.certPem, servername: ORCHESTRATOR_SERVERNAME, host: '127.0.0.1' };
    })();
    return material;
  };
}

/** The runner's V8 heap cap for a plugin's limits (runner-command.ts): fixed when the runner starts. */
const heapMb = (limits: ResolvedLimits) => Math.max(128, limits.memoryMb);

/**
 * Whether a plan may be given a warm runner: only when everything a runner cannot get after it started is the
 * pool's. A WASM plugin (a native library needs room for its private copy in the tmpfs), without the network (a
 * namespace of its own is made at spawn), without a data directory (a bind mount is made at spawn), with the pool's
 * tmpfs size and the same V8 heap cap (Node flags). Any other plan starts a fresh runner: nothing is faked.
 */
export function fitsPool(plan: LoadPlan, pool: PoolSettings): boolean {
  return (
    plan.type === 'wasm' &&
    !plan.grants.network &&
    plan.grants.filesystem === undefined &&
    plan.limits.tmpfsMb === pool.limits.tmpfsMb &&
    heapMb(plan.limits) === heapMb(pool.limits)
  );
}

/** What a warm runner's link answers before it has a plugin: its log lines go to the host's log, nothing else. */
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
  const { options, settings } = context;
  const supervision = { ...DEFAULT_SUPERVISION, ...options.supervision };
  /** What every runner of this backend shares, plugin or warm. */
  const shared = {
    session: context.session,
    runtimeDir: settings.runtimeDir,
    ...(options.runnerCommand === undefined ? {} : { runnerCommand: options.runnerCommand }),
    ...(settings.runnerUids === undefined ? {} : { runnerUids: settings.runnerUids }),
    startTimeoutMs: supervision.startTimeoutMs,
    ...(slot === undefined ? {} : { tenantCgroup: slot }),
    ...(options.runnerTransport === 'tls' ? { tls: localTls() } : {}),
  };
  const poolSettings = settings.pool;
  const pool =
    poolSettings === undefined || poolSettings.process <= 0
      ? undefined
      : new WarmPool<RunnerProcess>({
          size: poolSettings.process,
          ttlMs: poolSettings.ttlMs,
          kind: 'process',
          session: context.session.id,
          logger: context.logger,
          make: () => {
            const logger = context.logger.child({ sandbox: 'process', pool: 'process' });
            const limits = poolSettings.limits;
            const spec = warmSpec(limits);
            return new RunnerProcess({
              ...shared,
              pluginId: WARM_RUNNER_ID,
              limits,
              logger,
              spec,
              bytes: new Uint8Array(0),
              host: warmHost((level, message) => logger.debug({ level }, message)),
              network: false,
              dataDir: undefined,
              warm: true,
            });
          },
        });
  return {
    sandbox(plan, host) {
      const { pluginId, limits } = plan;
      return new LazySandbox(pluginId, 'process', async () => {
        const { spec, bytes } = await runnerPayload(plan, context);
        const logger = context.logger.child({ sandbox: 'process' });
        const common = { pluginId, limits, logger, session: context.session };
        const runnerOptions: RunnerProcessOptions = {
          ...shared,
          ...common,
          spec,
          bytes,
          host,
          network: plan.grants.network,
          dataDir: plan.grants.filesystem,
        };
        const fits = pool !== undefined && poolSettings !== undefined && fitsPool(plan, poolSettings);
        // `[sandbox] replicas` above 1: as many supervised runners behind one ReplicaSet; 1: this sandbox itself.
        return replicated(
          plan,
          () =>
            new SupervisedSandbox({
              ...common,
              mode: 'process',
              supervision,
              idleTimeoutMs: plan.idleTimeoutMs ?? 0,
              // Every start (the first, a restart, a start after scale-to-zero) takes a warm runner when one is ready.
              createRunner: () => {
                const warm = fits ? pool.take() : undefined;
                if (warm === undefined) return new RunnerProcess(runnerOptions);
                warm.assign(runnerOptions, () => pool?.handedOut());
                return warm;
              },
            }),
        );
      });
    },
    /** Runner directories (and the runners in them) and cgroups of hosts that died. */
    async sweep() {
      await sweepOrphans(context.settings.runtimeDir, context.logger);
      sweepCgroups(context.logger);
    },
    warm() {
      pool?.start();
    },
    async close() {
      await pool?.close();
    },
  };
};
