import type { Logger } from 'pino';
import { type Dockerode, engineClientOf } from '../container/dockerode-client.js';
import { LABEL_HOST_CONTAINER, LABEL_MANAGED, LABEL_SESSION, pidNamespace } from '../container/labels.js';
import { ownerIsDead } from '../container/sweep.js';
import { LABEL_SWARM_KIND } from './service-spec.js';

/** What was removed. */
export interface SwarmRemoved {
  services: number;
  networks: number;
  secrets: number;
}

/** How long a network may keep endpoints of tasks that are stopping before its removal is given up (next sweep). */
const NETWORK_DRAIN_MS = 60_000;

interface Labelled {
  ID?: string;
  Id?: string;
  Spec?: { Labels?: Record<string, string> };
  Labels?: Record<string, string>;
}

function labelsOf(item: Labelled): Record<string, string> {
  return item.Spec?.Labels ?? item.Labels ?? {};
}

function idOf(item: Labelled): string {
  return item.ID ?? item.Id ?? '';
}

function statusOf(error: unknown): number | undefined {
  const e = error as { statusCode?: number; message?: string };
  // A network removed meanwhile (its last task's node let it go) is a 500 "network ... not found" on API 1.41.
  if (e.statusCode === 500 && /\bnot found\b/.test(e.message ?? '')) return 404;
  // A network its removed service's task still holds (the task is stopping): a 400 FailedPrecondition, to wait out.
  if (e.statusCode === 400 && /\bin use by task\b/.test(e.message ?? '')) return 403;
  return e.statusCode;
}

/**
 * Removes every service, then network, then secret of the swarm backend that carries all of `labels` (`key=value`)
 * besides `reed.managed=true` and the backend's kind label: services first (their tasks hold the networks and
 * secrets), then each network once the tasks' endpoints have left it, then the secrets. Something already gone
 * counts as removed by someone else and is not an error.
 */
export async function removeSwarmResources(docker: Dockerode, labels: string[]): Promise<SwarmRemoved> {
  const filters = { label: [`${LABEL_MANAGED}=true`, LABEL_SWARM_KIND, ...labels] };
  const removed: SwarmRemoved = { services: 0, networks: 0, secrets: 0 };
  for (const service of (await docker.listServices({ filters })) as Labelled[]) {
    try {
      await docker.getService(idOf(service)).remove();
      removed.services++;
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
  }
  const networks = (await docker.listNetworks({ filters })) as Labelled[];
  const deadline = Date.now() + NETWORK_DRAIN_MS;
  for (const network of networks) {
    const id = idOf(network);
    // An orchestrator in a container joined the network to be reached (no relay): its endpoint never leaves by
    // itself, so it is taken off first. Whatever this cannot do (the container gone, already off) the removal below
    // finds out and reports, once the drain time is over.
    const orchestrator = labelsOf(network)[LABEL_HOST_CONTAINER];
    if (orchestrator !== undefined)
      await docker
        .getNetwork(id)
        .disconnect({ Container: orchestrator, Force: true })
        .catch(() => {});
    for (;;) {
      try {
        await docker.getNetwork(id).remove();
        removed.networks++;
        break;
      } catch (error) {
        const status = statusOf(error);
        if (status === 404) break;
        // 403: "has active endpoints", the removed services' tasks are still stopping.
        if (status !== 403 || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }
  for (const secret of (await docker.listSecrets({ filters })) as Labelled[]) {
    try {
      await docker.getSecret(idOf(secret)).remove();
      removed.secrets++;
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
  }
  return removed;
}

/**
 * Removes what orchestrators that are no longer alive left on the swarm (services, networks, secrets), found by
 * their labels and judged dead as container mode's sweep judges a host (sweepContainers): a host that cannot be
 * judged from here (another machine's, not in a container this engine knows) is left alone.
 */
export async function sweepSwarm(docker: Dockerode, logger?: Logger): Promise<SwarmRemoved> {
  const engine = engineClientOf(docker);
  const filters = { label: [`${LABEL_MANAGED}=true`, LABEL_SWARM_KIND, LABEL_SESSION] };
  const found = [
    ...((await docker.listServices({ filters })) as Labelled[]),
    ...((await docker.listNetworks({ filters })) as Labelled[]),
    ...((await docker.listSecrets({ filters })) as Labelled[]),
  ];
  const sessions = new Map<string, Record<string, string>>();
  for (const item of found) {
    const labels = labelsOf(item);
    const session = labels[LABEL_SESSION];
    if (session !== undefined && !sessions.has(session)) sessions.set(session, labels);
  }
  const total: SwarmRemoved = { services: 0, networks: 0, secrets: 0 };
  const ownNamespace = pidNamespace();
  for (const [session, labels] of sessions) {
    if (!(await ownerIsDead(() => engine, labels, ownNamespace))) continue;
    try {
      const removed = await removeSwarmResources(docker, [`${LABEL_SESSION}=${session}`]);
      total.services += removed.services;
      total.networks += removed.networks;
      total.secrets += removed.secrets;
    } catch (error) {
      logger?.warn(
        { err: error, session },
        'could not remove all a dead host left on the swarm; the next sweep retries',
      );
    }
  }
  if (total.services + total.networks + total.secrets > 0)
    logger?.info({ ...total }, 'removed swarm services, networks and secrets left by dead hosts');
  return total;
}
