import { ReedError } from '../../errors.js';
import type { Dockerode } from '../container/dockerode-client.js';
import { engineError } from '../container/engine-client.js';

/** `host[:port]` of a registry (no scheme, no path). */
const REGISTRY = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$/;
/** A local image as images.ts tags it: `name:contenthash`. */
const LOCAL_IMAGE = /^([a-z0-9][a-z0-9._-]{0,127}):([a-z0-9]{8,64})$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** A push's progress is small (a line per layer step); more than this is not an engine's. */
const MAX_PUSH_EVENTS = 100_000;

/** One line of a push's progress, as the engine writes it. */
interface PushEvent {
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Tag?: string; Digest?: string; Size?: number };
}

/**
 * Puts a local image of `docker`'s engine (tagged `name:contenthash` by images.ts) into `registry` and returns the
 * reference every node of a swarm pulls it by: `registry/name@sha256:<manifest digest>`. The content hash stays
 * its tag in the registry, so what was pushed is found by what went in; the digest pins what the nodes run (a tag
 * can be moved, a digest cannot). Pushing an image the registry has already moves no layer.
 */
export async function publishImage(docker: Dockerode, image: string, registry: string): Promise<string> {
  if (!REGISTRY.test(registry))
    throw new ReedError(
      'invalid_argument',
      `swarm registry ${JSON.stringify(registry.slice(0, 200))} is not host[:port]`,
    );
  const local = LOCAL_IMAGE.exec(image);
  if (local === null)
    throw new ReedError(
      'invalid_argument',
      `image ${JSON.stringify(image.slice(0, 200))} is not name:contenthash`,
    );
  const [, name, tag] = local as unknown as [string, string, string];
  const repo = `${registry}/${name}`;
  try {
    await docker.getImage(image).tag({ repo, tag });
  } catch (error) {
    throw engineError(error, `cannot tag image ${image} as ${repo}:${tag}`, 'image_push_failed');
  }
  let progress: NodeJS.ReadableStream;
  try {
    // An empty credential: the engine wants the header even for a registry without authentication.
    progress = (await docker.getImage(repo).push({ tag, authconfig: {} })) as NodeJS.ReadableStream;
  } catch (error) {
    throw engineError(error, `cannot push image ${repo}:${tag}`, 'image_push_failed');
  }
  let failure: string | undefined;
  let digest: string | undefined;
  let events = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(
        progress,
        (error: Error | null) => (error === null ? resolve() : reject(error)),
        (event: PushEvent) => {
          if (++events > MAX_PUSH_EVENTS) failure ??= `more than ${MAX_PUSH_EVENTS} progress events`;
          if (event.error !== undefined || event.errorDetail !== undefined)
            failure ??= String(event.errorDetail?.message ?? event.error).slice(0, 1000);
          if (event.aux?.Tag === tag && typeof event.aux.Digest === 'string') digest = event.aux.Digest;
        },
      );
    });
  } catch (error) {
    throw engineError(error, `pushing image ${repo}:${tag} failed`, 'image_push_failed');
  }
  if (failure !== undefined)
    throw new ReedError(
      'image_push_failed',
      `pushing image ${repo}:${tag} to ${registry} failed: ${failure}`,
    );
  if (digest === undefined || !DIGEST.test(digest))
    throw new ReedError(
      'image_push_failed',
      `pushing image ${repo}:${tag} to ${registry}: the engine reported no manifest digest`,
    );
  return `${repo}@${digest}`;
}
