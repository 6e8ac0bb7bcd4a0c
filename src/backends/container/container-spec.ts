import { posix, relative } from 'node:path';
import type { FilesystemGrant } from '../../manifest/data-dir.js';
import type { ResolvedLimits } from '../../manifest/limits.js';
import {
  PACKAGE_ROOT,
  RUNNER_ALLOWANCE_MB,
  RUNNER_DATA_DIR,
  RUNNER_MAIN,
  RUNNER_V8_FLAGS,
  WARM_PRELOAD,
} from '../shared/runner-program.js';
import type { HostSession } from '../shared/session.js';
import type { ContainerSpec } from './engine-client.js';
import { LABEL_MANAGED } from './labels.js';

/**
 * The user every container runs as; its group is the plugin's data directory's leased group when it has one
 * (container-runner.ts), never 65534 then.
 */
export const CONTAINER_USER = { uid: 65_534, gid: 65_534 };
/** Host tasks gVisor's sentry and gofer need besides the plugin's own (measured: 64 was not enough under load). */
export const GVISOR_PIDS_ALLOWANCE = 512;
/** Where the sandbox directory (socket, secret) appears inside the container, read-only. */
export const SOCKET_DIR = '/run/reed';

/** The image's node. */
export const CONTAINER_NODE = '/usr/local/bin/node';
/** Where a file of the package is in the runner image: the package's files are under /opt/reed (images.ts). */
const inImage = (path: string) => posix.join('/opt/reed', relative(PACKAGE_ROOT, path));
/** A container's program: the runner, with the V8 flags of process mode's runners. */
export const RUNNER_ENTRYPOINT: readonly string[] = [
  CONTAINER_NODE,
  ...RUNNER_V8_FLAGS,
  inImage(RUNNER_MAIN),
];
/** A warm container's program: the same, with the WASM runtime preloaded before its Hello (warm-preload.ts). */
export const WARM_ENTRYPOINT: readonly string[] = [
  CONTAINER_NODE,
  ...RUNNER_V8_FLAGS,
  `--import=file://${inImage(WARM_PRELOAD)}`,
  inImage(RUNNER_MAIN),
];

/** What a plugin's container is made from. */
export interface ContainerSettings {
  pluginId: string;
  limits: ResolvedLimits;
  session: HostSession;
  image: string;
  runtime: 'runc' | 'runsc';
  /** Whether the manifest's network permission was granted by the policy. */
  network: boolean;
  labels: Record<string, string>;
  /** The program the container runs instead of the image's runner (tests use hostile ones); its arguments follow. */
  command?: string[];
  /**
   * The plugin's data directory on the host (plan.grants.filesystem): mounted alone at RUNNER_DATA_DIR, read-only
   * for "read". Absent: nothing of data_dir is mounted.
   */
  dataDir?: FilesystemGrant | undefined;
  /** The cgroup the container's goes under: its tenant's (cgroupfs driver), absent otherwise. */
  cgroupParent?: string | undefined;
}

/** A container's name: the host session's and its sandbox directory's (unique on the engine). */
export function containerName(o: Pick<ContainerSettings, 'session'>, dir: string): string {
  return `reed-${o.session.id.slice(0, 8)}-${dir.slice(-6).toLowerCase()}`;
}

/**
 * A plugin's container, hardened as the CIS Docker Benchmark's runtime section asks: no capabilities, no new
 * privileges, read-only root, a small noexec /tmp, memory without swap, a CPU quota, a pids limit, ulimits, no
 * network unless granted, a non-root user, an init, private IPC, rotated logs, and no mount but its own sandbox
 * directory `dir`, read-only (no Docker socket), and the plugin's data directory when it was granted one. `dial`
 * are the runner's arguments saying where the host listens; `gid` the group the container runs as (the data
 * directory's leased group when it has one).
 */
export function containerSpec(
  o: ContainerSettings,
  dir: string,
  dial: string[],
  gid: number = CONTAINER_USER.gid,
): ContainerSpec {
  const l = o.limits;
  const memory = (l.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024;
  // One file may be as large as the data directory's quota there (WASI enforces the quota itself); elsewhere the
  // tmpfs bounds what a file can hold.
  const fileBytes = Math.max(l.tmpfsMb, o.dataDir === undefined ? 0 : l.diskMb) * 1024 * 1024;
  return {
    name: containerName(o, dir),
    Image: o.image,
    Entrypoint: [...(o.command ?? RUNNER_ENTRYPOINT)],
    Cmd: ['--plugin-id', o.pluginId, ...dial],
    User: `${CONTAINER_USER.uid}:${gid}`,
    WorkingDir: '/work',
    Env: ['LANG=C.UTF-8'],
    Labels: { ...o.labels, [LABEL_MANAGED]: 'true' },
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      Runtime: o.runtime,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      Privileged: false,
      ReadonlyRootfs: true,
      // /work holds the runner's private copy of a native library, which must be mappable: no noexec there.
      Tmpfs: {
        '/tmp': `rw,noexec,nosuid,nodev,mode=1777,size=${l.tmpfsMb}m`,
        '/work': `rw,exec,nosuid,nodev,size=${Math.max(l.tmpfsMb, 64)}m,uid=${CONTAINER_USER.uid}`,
      },
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: Math.round(l.cpus * 1e9),
      // gVisor's own sentry and gofer threads count against the cgroup's pids; they need room of their own.
      PidsLimit: o.runtime === 'runsc' ? l.pids + GVISOR_PIDS_ALLOWANCE : l.pids,
      Ulimits: [
        { Name: 'nofile', Soft: 1024, Hard: 1024 },
        { Name: 'core', Soft: 0, Hard: 0 },
        { Name: 'fsize', Soft: fileBytes, Hard: fileBytes },
      ],
      NetworkMode: o.network ? 'bridge' : 'none',
      Init: true,
      IpcMode: 'private',
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } },
      // /dev/shm is a tmpfs too: no bigger than /tmp.
      ShmSize: l.tmpfsMb * 1024 * 1024,
      // Read-only: connecting to a Unix socket needs no write access to its directory or mount.
      Binds: [`${dir}:${SOCKET_DIR}:ro`],
      ...(o.cgroupParent === undefined ? {} : { CgroupParent: o.cgroupParent }),
      ...(o.dataDir === undefined
        ? {}
        : {
            Mounts: [
              {
                Type: 'bind',
                Source: o.dataDir.hostPath,
                Target: RUNNER_DATA_DIR,
                ReadOnly: o.dataDir.readOnly,
              },
            ],
          }),
    },
  };
}
