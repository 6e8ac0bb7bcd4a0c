import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { isAlive } from '../sandbox/session.js';
import { LABEL_MANAGED } from './images.js';

export const LABEL_SESSION = 'reed.host.session';
export const LABEL_HOST_PID = 'reed.host.pid';
export const LABEL_HOST_START = 'reed.host.start';

/**
 * Removes containers left by hosts that are no longer alive, found by label (never a container this package
 * did not make: only `reed.managed=true` ones, and only when their host's pid and start time show it dead).
 */
export async function sweepContainers(docker: Docker, logger?: Logger): Promise<number> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_MANAGED}=true`] },
  });
  let removed = 0;
  for (const c of containers) {
    const pid = Number(c.Labels[LABEL_HOST_PID]);
    const start = c.Labels[LABEL_HOST_START] ?? '';
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid, start)) continue;
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
