import { accessSync } from 'node:fs';
import { request } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isAlive } from '../../process-identity.js';
import { type Dockerode, engineClientOf } from './dockerode-client.js';
import type { EngineClient, ListedContainer } from './engine-client.js';
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
export async function sweepContainers(
  docker: Dockerode | EngineClient,
  logger?: Logger,
): Promise<{ removed: number; failed: number }> {
  const engine = engineClientOf(docker);
  return sweepListed(await engine.listByLabels(MANAGED), () => engine, logger);
}

/**
 * sweepContainers over a listing made already (listManagedContainers): `engineOf` is asked for a client only
 * when a container's owner has to be inspected or a container removed.
 */
export async function sweepListed(
  containers: readonly ListedContainer[],
  engineOf: () => EngineClient,
  logger?: Logger,
): Promise<{ removed: number; failed: number }> {
  const ownNamespace = pidNamespace();
  let removed = 0;
  let failed = 0;
  for (const c of containers) {
    if (!(await ownerIsDead(engineOf, c.labels, ownNamespace))) continue;
    try {
      const engine = engineOf();
      if (await engine.remove(engine.container(c.id))) removed++;
    } catch {
      // The engine did not remove it: the next sweep tries again.
      failed++;
    }
  }
  if (removed > 0) logger?.info({ containers: removed }, 'removed containers left by dead hosts');
  return { removed, failed };
}

/**
 * The local engine's socket as dockerode finds it without $DOCKER_HOST (docker-modem's findDefaultUnixSocket):
 * Docker Desktop's `$HOME/.docker/run/docker.sock` when there is one, else /var/run/docker.sock. The sweep lists
 * and removes on this one socket, the engine the host's own client uses.
 */
export function localEngineSocket(): string {
  const user = join(homedir(), '.docker', 'run', 'docker.sock');
  try {
    accessSync(user);
    return user;
  } catch {
    return '/var/run/docker.sock';
  }
}

/** The labels a container this package made carries (see sweepContainers). */
const MANAGED = [`${LABEL_MANAGED}=true`, LABEL_SESSION];

/**
 * The containers this package made (see sweepContainers) on the engine at `socketPath`, listed with one request
 * over node:http: a host with nothing to remove never loads dockerode (a third of a host's heap with its
 * dependencies, see dockerode-client.ts). Rejects when the listing is not whole within `timeoutMs`. The engine
 * is trusted; the bound on its answer (64 MiB: tens of thousands of containers) is a guard.
 */
export function listManagedContainers(socketPath: string, timeoutMs: number): Promise<ListedContainer[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: MANAGED }));
  return new Promise((resolve, reject) => {
    const req = request(
      // A deadline from the request on (a socket timeout counts idle time only: an engine sending a byte now and then
      // would hold the host's start).
      {
        socketPath,
        path: `/containers/json?all=true&filters=${filters}`,
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > LISTING_MAX_BYTES)
            req.destroy(new Error(`the engine's container listing is over ${LISTING_MAX_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          if (res.statusCode !== 200)
            return reject(new Error(`the engine answered the container listing with ${res.statusCode}`));
          try {
            const listed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
              Id?: unknown;
              Labels?: unknown;
            }[];
            if (!Array.isArray(listed)) throw new Error("the engine's container listing is not a list");
            resolve(
              // An entry without a container id is nothing to remove (String(undefined) named "undefined").
              listed
                .filter((c) => typeof c?.Id === 'string' && CONTAINER_ID.test(c.Id))
                .map((c) => ({
                  id: c.Id as string,
                  labels: (typeof c.Labels === 'object' && c.Labels !== null ? c.Labels : {}) as Record<
                    string,
                    string
                  >,
                })),
            );
          } catch (error) {
            reject(error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const LISTING_MAX_BYTES = 64 << 20;
/** A container's id as the engine gives it: 64 lowercase hex digits. */
const CONTAINER_ID = /^[0-9a-f]{64}$/;

/** Whether the host that labelled something (a container, a swarm service...) is no longer alive; see sweepContainers. */
export async function ownerIsDead(
  /** The engine that knows the host's container, asked only for a host in another pid namespace. */
  engineOf: () => EngineClient,
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
    const engine = engineOf();
    const state = await engine.inspect(engine.container(hostContainer));
    return state === undefined || !state.running;
  } catch {
    return false;
  }
}
