import { readFileSync } from 'node:fs';
import { pidNamespaceInode } from '../../process-identity.js';
import type { HostSession } from '../shared/session.js';

/**
 * Every Docker label this package writes or reads (STYLE.md 7), in one place, as testcontainers keeps its
 * labels: images and containers carry `reed.managed`, containers the session that made them (the sweep reads it
 * back to find what dead hosts left) and the plugin they run.
 */
export const LABEL_MANAGED = 'reed.managed';
/** An image's content hash (also its tag): the cache key of the build. */
export const LABEL_IMAGE_HASH = 'reed.image.hash';
export const LABEL_PLUGIN_ID = 'reed.plugin.id';
export const LABEL_PLUGIN_VERSION = 'reed.plugin.version';
export const LABEL_SESSION = 'reed.host.session';
export const LABEL_HOST_PID = 'reed.host.pid';
export const LABEL_HOST_START = 'reed.host.start';
/** The host's pid namespace: a pid and start time mean something only to a host in the same namespace. */
export const LABEL_HOST_PIDNS = 'reed.host.pidns';
/** The tenant whose host started the container (src/tenants/): absent for a host made outside a registry. */
export const LABEL_TENANT = 'reed.tenant';
/**
 * A warm container of a pool (src/backends/pool/): the runtime whose pool made it. Its `reed.plugin.id` is the
 * warm runner's (`reed-warm-runner`) for good: labels are fixed at create, and a hand-out cannot change them.
 */
export const LABEL_POOL = 'reed.pool';
/** The container the host itself runs in (docker-compose.yml), when it runs in one. */
export const LABEL_HOST_CONTAINER = 'reed.host.container';

/** The labels that tie a container to the host session that made it; `sweepContainers` reads them back. */
export function sessionLabels(session: HostSession): Record<string, string> {
  const container = ownContainerId();
  return {
    [LABEL_SESSION]: session.id,
    [LABEL_HOST_PID]: String(session.pid),
    [LABEL_HOST_START]: session.start,
    [LABEL_HOST_PIDNS]: pidNamespace(),
    ...(container === undefined ? {} : { [LABEL_HOST_CONTAINER]: container }),
  };
}

/** A plugin container's labels: which plugin and version, which host session, which image (by content hash). */
export function containerLabels(
  plugin: { id: string; version: string },
  session: HostSession,
  image: string,
): Record<string, string> {
  return {
    [LABEL_PLUGIN_ID]: plugin.id,
    [LABEL_PLUGIN_VERSION]: plugin.version,
    ...(session.tenant === undefined ? {} : { [LABEL_TENANT]: session.tenant }),
    ...sessionLabels(session),
    [LABEL_IMAGE_HASH]: image.split(':')[1] ?? '',
  };
}

/** `pid:[inode]` of this process's pid namespace (the form the labels have always had). */
export function pidNamespace(): string {
  return `pid:[${pidNamespaceInode()}]`;
}

/**
 * The id of the Docker container this process runs in, if it runs in one: Docker bind-mounts the container's
 * own hostname, hosts and resolv.conf files from /var/lib/docker/containers/<id>/, which /proc/self/mountinfo
 * shows whatever the cgroup version.
 */
export function ownContainerId(): string | undefined {
  if (ownContainer === null) {
    try {
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
      ownContainer = /\/containers\/([0-9a-f]{64})\/(?:hostname|hosts|resolv\.conf)\s/.exec(mounts)?.[1];
    } catch {
      ownContainer = undefined;
    }
  }
  return ownContainer;
}

/** null: not looked up yet (a process does not move into another container). */
let ownContainer: string | undefined | null = null;
