import { createHash } from 'node:crypto';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { CONTAINER_USER, GVISOR_PIDS_ALLOWANCE } from '../container/container-spec.js';
import { LABEL_MANAGED, LABEL_PLUGIN_ID, LABEL_PLUGIN_VERSION, sessionLabels } from '../container/labels.js';
import { RUNNER_ALLOWANCE_MB } from '../shared/runner-program.js';
import type { HostSession } from '../shared/session.js';

/** What the swarm backend labels its services, networks and secrets with besides container mode's labels. */
export const LABEL_SWARM_KIND = 'reed.swarm.kind';
/** A node label: `reed.runtime=runsc` on nodes whose engine's default runtime is gVisor (docs/SCALE.md). */
export const NODE_LABEL_RUNTIME = 'reed.runtime';
/** Where the runner finds its secret (the one-time token and the CA, see the TLS transport) in a task. */
export const SECRET_TARGET = 'reed-runner';

/** What a plugin's service is made from. */
export interface ServiceSettings {
  pluginId: string;
  version: string;
  limits: ResolvedLimits;
  session: HostSession;
  /** `registry/name@sha256:...` (registry.ts): every node pulls the same bytes. */
  image: string;
  runtime: 'runc' | 'runsc';
  replicas: number;
  /** The plugin's internal overlay network (its id). */
  network: string;
  /** The runner's arguments saying where the orchestrator listens (the TLS transport's address). */
  dial: string[];
  /** More of the runner's environment (the TLS transport's CA and server name, REED_SECRET_FILE). */
  env?: string[] | undefined;
  /** The Docker secret the runner reads at /run/secrets/reed-runner. */
  secret?: { id: string; name: string } | undefined;
  /** The program the task runs instead of the image's runner (tests use probes); its arguments follow. */
  command?: string[] | undefined;
}

/** A Swarm service's spec, in the Engine API's own field names (API 1.41: Docker 20.10, Debian 12's engine). */
export interface ServiceSpec {
  Name: string;
  Labels: Record<string, string>;
  TaskTemplate: {
    ContainerSpec: {
      Image: string;
      Command?: string[];
      Args: string[];
      User: string;
      Dir: string;
      Env: string[];
      Labels: Record<string, string>;
      ReadOnly: boolean;
      Init: boolean;
      CapabilityDrop: string[];
      Ulimits: { Name: string; Soft: number; Hard: number }[];
      Mounts: {
        Type: 'tmpfs';
        Source: string;
        Target: string;
        TmpfsOptions: { SizeBytes: number; Mode: number };
      }[];
      Secrets: {
        SecretID: string;
        SecretName: string;
        File: { Name: string; UID: string; GID: string; Mode: number };
      }[];
      StopGracePeriod: number;
    };
    Resources: { Limits: { NanoCPUs: number; MemoryBytes: number; Pids: number } };
    RestartPolicy: { Condition: 'any'; Delay: number; MaxAttempts: number };
    Placement: { Constraints: string[] };
    Networks: { Target: string }[];
    LogDriver: { Name: string; Options: Record<string, string> };
  };
  Mode: { Replicated: { Replicas: number } };
  EndpointSpec: { Mode: 'dnsrr' };
}

/** The labels of everything the swarm backend makes for a plugin: the plugin, the host session, the kind. */
export function swarmLabels(
  plugin: { id: string; version: string },
  session: HostSession,
  kind: 'service' | 'network' | 'secret' | 'relay',
): Record<string, string> {
  return {
    [LABEL_MANAGED]: 'true',
    [LABEL_PLUGIN_ID]: plugin.id,
    [LABEL_PLUGIN_VERSION]: plugin.version,
    ...sessionLabels(session),
    [LABEL_SWARM_KIND]: kind,
  };
}

/**
 * A name Swarm accepts for a plugin's service, network or secret (at most 63 characters of [a-z0-9-]): the
 * session, the plugin id as far as it is such characters, and a hash of the whole id, so two ids that read the same
 * once cut never meet.
 */
export function swarmName(session: HostSession, pluginId: string): string {
  const hash = createHash('sha256').update(pluginId).digest('hex').slice(0, 8);
  const readable = pluginId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 32);
  return `reed-${session.id.slice(0, 8).toLowerCase()}-${readable}-${hash}`.replace(/--+/g, '-');
}

/**
 * A plugin's service, hardened as container mode's containers wherever Swarm's API (1.41) can say it: read-only
 * root, no capabilities, the non-root user, an init, memory, CPU and pids limits, ulimits, tmpfs for /tmp, /work
 * and /dev/shm, rotated logs, no port published, only the plugin's internal overlay network, and on gVisor nodes
 * only when the plan asks for runsc (a placement constraint: Swarm has no per-service runtime). What it cannot say
 * (no-new-privileges, swap, an exec tmpfs for /work, IPC mode) is in docs/SCALE.md with what stands in for it.
 */
export function serviceSpec(o: ServiceSettings): ServiceSpec {
  const l = o.limits;
  const memory = (l.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024;
  const plugin = { id: o.pluginId, version: o.version };
  const labels = swarmLabels(plugin, o.session, 'service');
  return {
    Name: swarmName(o.session, o.pluginId),
    Labels: labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: o.image,
        ...(o.command === undefined ? {} : { Command: o.command }),
        Args: o.command === undefined ? ['--plugin-id', o.pluginId, ...o.dial] : [],
        User: `${CONTAINER_USER.uid}:${CONTAINER_USER.gid}`,
        Dir: '/work',
        Env: ['LANG=C.UTF-8', ...(o.env ?? [])],
        Labels: labels,
        ReadOnly: true,
        Init: true,
        CapabilityDrop: ['ALL'],
        Ulimits: [
          { Name: 'nofile', Soft: 1024, Hard: 1024 },
          { Name: 'core', Soft: 0, Hard: 0 },
          { Name: 'fsize', Soft: l.tmpfsMb * 1024 * 1024, Hard: l.tmpfsMb * 1024 * 1024 },
        ],
        Mounts: [
          {
            Type: 'tmpfs',
            Source: '',
            Target: '/tmp',
            TmpfsOptions: { SizeBytes: l.tmpfsMb * 1024 * 1024, Mode: 0o1777 },
          },
          {
            Type: 'tmpfs',
            Source: '',
            Target: '/work',
            TmpfsOptions: { SizeBytes: Math.max(l.tmpfsMb, 64) * 1024 * 1024, Mode: 0o1777 },
          },
          {
            Type: 'tmpfs',
            Source: '',
            Target: '/dev/shm',
            TmpfsOptions: { SizeBytes: l.tmpfsMb * 1024 * 1024, Mode: 0o1777 },
          },
        ],
        Secrets:
          o.secret === undefined
            ? []
            : [
                {
                  SecretID: o.secret.id,
                  SecretName: o.secret.name,
                  File: {
                    Name: SECRET_TARGET,
                    UID: String(CONTAINER_USER.uid),
                    GID: String(CONTAINER_USER.gid),
                    Mode: 0o400,
                  },
                },
              ],
        StopGracePeriod: 5_000_000_000,
      },
      Resources: {
        Limits: {
          NanoCPUs: Math.round(l.cpus * 1e9),
          MemoryBytes: memory,
          Pids: o.runtime === 'runsc' ? l.pids + GVISOR_PIDS_ALLOWANCE : l.pids,
        },
      },
      RestartPolicy: { Condition: 'any', Delay: 1_000_000_000, MaxAttempts: 0 },
      Placement: { Constraints: o.runtime === 'runsc' ? [`node.labels.${NODE_LABEL_RUNTIME}==runsc`] : [] },
      Networks: [{ Target: o.network }],
      LogDriver: { Name: 'json-file', Options: { 'max-size': '1m', 'max-file': '2' } },
    },
    Mode: { Replicated: { Replicas: o.replicas } },
    // No virtual IP: nothing connects to a plugin's service (its runners dial the orchestrator), and a VIP needs
    // IPVS, which not every kernel has (this machine's has not).
    EndpointSpec: { Mode: 'dnsrr' },
  };
}

/** The plugin's own overlay network: internal (no route out), attachable (the orchestrator's container joins it). */
export function networkSpec(
  plugin: { id: string; version: string },
  session: HostSession,
): {
  Name: string;
  Driver: 'overlay';
  Internal: true;
  Attachable: true;
  CheckDuplicate: true;
  Labels: Record<string, string>;
} {
  return {
    Name: swarmName(session, plugin.id),
    Driver: 'overlay',
    Internal: true,
    Attachable: true,
    CheckDuplicate: true,
    Labels: swarmLabels(plugin, session, 'network'),
  };
}
