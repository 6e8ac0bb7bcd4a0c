import type { Logger } from 'pino';
import { isAlive } from '../../process-identity.js';
import { type Dockerode, engineClientOf } from './dockerode-client.js';
import type { EngineClient } from './engine-client.js';
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
export async function sweepContainers(docker: Dockerode | EngineClient, logger?: Logger): Promise<number> {
  const engine = engineClientOf(docker);
  // The session label too: images carry reed.managed, and containers inherit their image's labels, so a
  // container someone runs from one of our images (docker-compose.yml's orchestrator, for one) has it as well.
  const containers = await engine.listByLabels([`${LABEL_MANAGED}=true`, LABEL_SESSION]);
  const ownNamespace = pidNamespace();
  let removed = 0;
  for (const c of containers) {
    if (!(await ownerIsDead(engine, c.labels, ownNamespace))) continue;
    try {
      if (await engine.remove(engine.container(c.id))) removed++;
    } catch {
      // The engine did not remove it: the next sweep tries again.
    }
  }
  if (removed > 0) logger?.info({ containers: removed }, 'removed containers left by dead hosts');
  return removed;
}

/** Whether the host that labelled something (a container, a swarm service...) is no longer alive; see sweepContainers. */
export async function ownerIsDead(
  engine: EngineClient,
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
    const state = await engine.inspect(engine.container(hostContainer));
    return state === undefined || !state.running;
  } catch {
    return false;
  }
}
