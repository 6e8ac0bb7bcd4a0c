import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { ReedError } from '../../errors.js';
import type { PluginSpec } from '../../protocol/messages.js';
import { dialArguments } from '../../transport/transport.js';
import { DockerDemux, OutputPump } from '../shared/output-pump.js';
import type { Runner } from '../shared/runner.js';
import { type EndpointOptions, RunnerEndpoint } from '../shared/runner-endpoint.js';
import type { RunnerLink } from '../shared/runner-link.js';
import { PACKAGE_ROOT, RUNNER_ALLOWANCE_MB, raceStart } from '../shared/runner-program.js';
import { dockerError } from './images.js';
import { LABEL_MANAGED } from './labels.js';

/** The user every container runs as. */
export const CONTAINER_USER = { uid: 65_534, gid: 65_534 };
/** Host tasks gVisor's sentry and gofer need besides the plugin's own (measured: 64 was not enough under load). */
export const GVISOR_PIDS_ALLOWANCE = 512;
/** Where the sandbox directory (socket, secret) appears inside the container, read-only. */
const SOCKET_DIR = '/run/reed';

export interface ContainerRunnerOptions extends EndpointOptions {
  spec: PluginSpec;
  bytes: Uint8Array;
  docker: Docker;
  image: string;
  runtime: 'runc' | 'runsc';
  /** Whether the manifest's network permission was granted by the policy. */
  network: boolean;
  labels: Record<string, string>;
  /** The program the container runs instead of the image's runner (tests use hostile ones); its arguments follow. */
  command?: string[];
}

/**
 * A runner in a per-plugin container, hardened as the CIS Docker Benchmark's runtime section asks: no
 * capabilities, no new privileges, read-only root, a small noexec /tmp, memory without swap, a CPU quota,
 * a pids limit, ulimits, no network unless granted, a non-root user, an init, private IPC, rotated logs, and
 * no mount but its own sandbox directory, read-only (no Docker socket).
 */
export class ContainerRunner implements Runner {
  readonly #o: ContainerRunnerOptions;
  readonly #endpoint: RunnerEndpoint;
  #container: Docker.Container | undefined;
  #running = false;
  pid: number | undefined;
  stderrTail = '';
  exited: Promise<{ code: number | null; signal: string | null }> = new Promise(() => {});

  constructor(options: ContainerRunnerOptions) {
    // The directory stays the host's (root, 0711) and is mounted read-only: the runner only connects to the
    // socket and reads the secret, so nothing it does reaches the host's disk or makes the host follow a link.
    this.#o = {
      ...options,
      runAs: CONTAINER_USER,
      privateWorkDir: true,
      runnerSocketPath: `${SOCKET_DIR}/s.sock`,
    };
    this.#endpoint = new RunnerEndpoint(this.#o, PACKAGE_ROOT);
  }

  /** Another runner with the same settings (a fresh container, directory and secret). */
  sibling(): ContainerRunner {
    return new ContainerRunner(this.#o);
  }

  get dir(): string {
    return this.#endpoint.dir;
  }

  get link(): RunnerLink | undefined {
    return this.#endpoint.link;
  }

  get alive(): boolean {
    return this.#running;
  }

  get container(): Docker.Container | undefined {
    return this.#container;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const endpoint = this.#endpoint;
    await endpoint.listen();
    // The secret goes in a file only the container's user can read, in a directory it cannot write (the host
    // removes the file once the runner has authenticated).
    endpoint.writeSecretFile(CONTAINER_USER);
    const runtimes = await registeredRuntimes(o.docker);
    if (!runtimes.includes(o.runtime)) {
      // Fail closed: never fall back to runc when runsc was asked for.
      throw new ReedError(
        'runtime_unavailable',
        `container runtime "${o.runtime}" is not registered with the Docker engine (it has: ${runtimes.join(', ')})`,
        {
          pluginId: o.pluginId,
        },
      );
    }
    const l = o.limits;
    const memory = (l.memoryMb + RUNNER_ALLOWANCE_MB) * 1024 * 1024;
    try {
      this.#container = await o.docker.createContainer({
        name: `reed-${o.session.id.slice(0, 8)}-${endpoint.dir.slice(-6).toLowerCase()}`,
        Image: o.image,
        ...(o.command === undefined ? {} : { Entrypoint: o.command }),
        Cmd: ['--plugin-id', o.pluginId, ...dialArguments(endpoint.addressForRunner())],
        User: `${CONTAINER_USER.uid}:${CONTAINER_USER.gid}`,
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
            { Name: 'fsize', Soft: l.tmpfsMb * 1024 * 1024, Hard: l.tmpfsMb * 1024 * 1024 },
          ],
          NetworkMode: o.network ? 'bridge' : 'none',
          Init: true,
          IpcMode: 'private',
          LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } },
          // /dev/shm is a tmpfs too: no bigger than /tmp.
          ShmSize: l.tmpfsMb * 1024 * 1024,
          // Read-only: connecting to a Unix socket needs no write access to its directory or mount.
          Binds: [`${endpoint.dir}:${SOCKET_DIR}:ro`],
        },
      });
      // The engine answers again: remove what could not be removed while it did not.
      void removeLeftovers(o.docker);
      const stream = await this.#container.attach({ stream: true, stdout: true, stderr: true });
      // Bounded whatever the runner writes (output-pump.ts); the stderr tail (for start errors) stays 4 KiB.
      new DockerDemux(
        new OutputPump({
          pluginId: o.pluginId,
          logger: o.logger,
          onLine: (level, line) => {
            if (level === 2) this.stderrTail = `${this.stderrTail}\n${line}`.slice(-4096);
            o.host.log(level, line);
          },
        }),
      ).attach(stream as unknown as Readable);
      // 'next-exit': the default ('not-running') is already true of a container that is created but not started.
      this.exited = this.#container.wait({ condition: 'next-exit' }).then(
        (r: { StatusCode?: number }) => {
          this.#running = false;
          return { code: r.StatusCode ?? null, signal: null };
        },
        () => {
          this.#running = false;
          return { code: null, signal: null };
        },
      );
      await this.#container.start();
      this.#running = true;
      // The pid is only for reports: fetch it off the start path.
      void this.#container
        .inspect()
        .then((state: { State?: { Pid?: number } }) => {
          this.pid = state.State?.Pid;
        })
        .catch(() => {});
    } catch (error) {
      if (error instanceof ReedError) throw error;
      throw dockerError(
        error,
        `cannot start the container of plugin "${o.pluginId}"`,
        'sandbox_start_failed',
      );
    }
    try {
      await raceStart(
        endpoint.serve(o.spec, o.bytes),
        this.exited,
        o.startTimeoutMs,
        o.pluginId,
        () => this.stderrTail,
      );
    } catch (error) {
      // Put what the container said into the error: a container that never connects back is a mystery otherwise.
      const logs = await this.#logs();
      throw new ReedError(
        (error as ReedError).code ?? 'sandbox_start_failed',
        `${(error as Error).message}${logs === '' ? '' : `; container logs: ${logs}`}`,
        {
          pluginId: o.pluginId,
          cause: error,
        },
      );
    }
  }

  async #logs(): Promise<string> {
    try {
      const raw = Buffer.from(
        (await this.#container?.logs({ stdout: true, stderr: true, tail: 40 })) as unknown as Buffer,
      );
      return demuxLogs(raw).trim().slice(-2000);
    } catch {
      return '';
    }
  }

  async oomKilled(): Promise<boolean> {
    try {
      const state = (await this.#container?.inspect()) as { State?: { OOMKilled?: boolean } } | undefined;
      return state?.State?.OOMKilled === true;
    } catch {
      return false;
    }
  }

  kill(): void {
    void this.#container?.kill({ signal: 'SIGKILL' }).catch(() => {});
  }

  terminate(): void {
    void this.#container?.kill({ signal: 'SIGTERM' }).catch(() => {});
  }

  /** Removes the container (whatever its state) and the sandbox directory. Idempotent. */
  async destroy(): Promise<void> {
    this.link?.destroy();
    if (this.#container !== undefined) {
      const { id } = this.#container;
      await this.#container.remove({ force: true }).catch((error: { statusCode?: number }) => {
        if (error.statusCode !== 404) leftovers(this.#o.docker).add(id);
      });
      this.#running = false;
    }
    await this.#endpoint.close();
  }
}

/**
 * Containers whose removal failed (the engine did not answer), per engine: removed when a later container start
 * shows the engine answers again. Those of a host that exits first go with its session in the next host's sweep.
 */
const unremoved = new WeakMap<Docker, Set<string>>();

function leftovers(docker: Docker): Set<string> {
  let set = unremoved.get(docker);
  if (set === undefined) {
    set = new Set();
    unremoved.set(docker, set);
  }
  return set;
}

async function removeLeftovers(docker: Docker): Promise<void> {
  const set = unremoved.get(docker);
  for (const id of [...(set ?? [])]) {
    try {
      await docker.getContainer(id).remove({ force: true });
      set?.delete(id);
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) set?.delete(id);
    }
  }
}

const runtimeCache = new WeakMap<Docker, { at: number; runtimes: string[] }>();

/** The engine's registered runtimes, asked at most every 10 s (they change only when the engine restarts). */
async function registeredRuntimes(docker: Docker): Promise<string[]> {
  const cached = runtimeCache.get(docker);
  if (cached !== undefined && Date.now() - cached.at < 10_000) return cached.runtimes;
  const info = (await docker.info().catch((e: unknown) => {
    throw dockerError(e, 'cannot reach the Docker engine', 'sandbox_start_failed');
  })) as { Runtimes?: Record<string, unknown> };
  const runtimes = Object.keys(info.Runtimes ?? {});
  runtimeCache.set(docker, { at: Date.now(), runtimes });
  return runtimes;
}

/** Docker's multiplexed log format: per chunk an 8-byte header (stream, 0, 0, 0, u32 size), then the text. */
function demuxLogs(raw: Buffer): string {
  let text = '';
  let at = 0;
  while (at + 8 <= raw.length) {
    const size = raw.readUInt32BE(at + 4);
    text += raw.toString('utf8', at + 8, Math.min(raw.length, at + 8 + size));
    at += 8 + size;
  }
  return text;
}
