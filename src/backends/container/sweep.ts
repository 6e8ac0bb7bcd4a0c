import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { isAlive } from '../shared/session.js';
import {
  LABEL_HOST_CONTAINER,
  LABEL_HOST_PID,
  LABEL_HOST_PIDNS,
  LABEL_HOST_START,
  LABEL_MANAGED,
  LABEL_SESSION,
  pidNamespace,
} from './labels.js';

/**
 * Removes containers left by hosts that are no longer alive, found by label (never a container this package
 * did not make: only `reed.managed=true` ones with a host session's labels). A host is judged dead by its pid and start time only when it
 * shares this host's pid namespace; a host in another namespace is judged by its own container (gone or
 * stopped: dead), and one in another namespace that is not in a container is left alone: nothing here can
 * tell whether it lives. So a host on the machine and an orchestrator under docker-compose never sweep each
 * other's live containers.
 */
export async function sweepContainers(docker: Docker, logger?: Logger): Promise<number> {
  const containers = await docker.listContainers({
    all: true,
    // The session label too: images carry reed.managed, and containers inherit their image's labels, so a
    // container someone runs from one of our images (docker-compose.yml's orchestrator, for one) has it as well.
    filters: { label: [`${LABEL_MANAGED}=true`, LABEL_SESSION] },
  });
  const ownNamespace = pidNamespace();
  let removed = 0;
  for (const c of containers) {
    if (!(await ownerIsDead(docker, c.Labels, ownNamespace))) continue;
    try {
      await docker.getContainer(c.Id).remove({ force: true });
      removed++;
    } catch {
      // already gone
    }
  }
  if (removed > 0) logger?.info({ containers: removed }, 'removed containers left by dead hosts');
  return removed;
}

async function ownerIsDead(
  docker: Docker,
  labels: Record<string, string>,
  ownNamespace: string,
): Promise<boolean> {
  const namespace = labels[LABEL_HOST_PIDNS];
  // Containers made before the namespace label existed were made by hosts on the machine itself.
  if (namespace === undefined || namespace === ownNamespace) {
    const pid = Number(labels[LABEL_HOST_PID]);
    return !(Number.isInteger(pid) && pid > 0 && isAlive(pid, labels[LABEL_HOST_START] ?? ''));
  }
  const hostContainer = labels[LABEL_HOST_CONTAINER];
  if (hostContainer === undefined) return false;
  try {
    const info = await docker.getContainer(hostContainer).inspect();
    return !info.State.Running;
  } catch (error) {
    return (error as { statusCode?: number }).statusCode === 404;
  }
}
