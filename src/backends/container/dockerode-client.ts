import { createRequire } from 'node:module';
import type Dockerode from 'dockerode';
import type {
  BuildEvent,
  ContainerRef,
  ContainerResources,
  ContainerSpec,
  ContainerState,
  EngineClient,
  ImageBuild,
  ListedContainer,
} from './engine-client.js';

/** The dockerode client an embedder may pass (PluginHostOptions.docker, ImageOptions.docker). */
export type { Dockerode };

/**
 * The engine client over dockerode, the only file in src/ that uses it (the CLI's `images` command makes a
 * client of its own). Its ContainerRefs are dockerode's Container objects.
 */
export class DockerodeClient implements EngineClient {
  readonly address: string;

  constructor(readonly docker: Dockerode) {
    const m = docker.modem as { socketPath?: unknown; protocol?: string; host?: string; port?: number };
    // Its socket, its address, or the default ($DOCKER_HOST, else the local socket).
    if (typeof m.socketPath === 'string') this.address = m.socketPath;
    else this.address = m.host === undefined ? 'default' : `${m.protocol}://${m.host}:${m.port}`;
  }

  async runtimes(): Promise<string[]> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, unknown> };
    return Object.keys(info.Runtimes ?? {});
  }

  async cgroupDriver(): Promise<string> {
    const info = (await this.docker.info()) as { CgroupDriver?: string };
    return info.CgroupDriver ?? 'cgroupfs';
  }

  container(id: string): ContainerRef {
    return this.docker.getContainer(id);
  }

  create(spec: ContainerSpec): Promise<ContainerRef> {
    return this.docker.createContainer(spec);
  }

  attach(container: ContainerRef): Promise<NodeJS.ReadableStream> {
    return own(container).attach({ stream: true, stdout: true, stderr: true });
  }

  async waitExit(container: ContainerRef): Promise<number | null> {
    // 'next-exit': the default ('not-running') is already true of a container that is created but not started.
    const r = (await own(container).wait({ condition: 'next-exit' })) as { StatusCode?: number };
    return r.StatusCode ?? null;
  }

  async start(container: ContainerRef): Promise<void> {
    await own(container).start();
  }

  async inspect(container: ContainerRef): Promise<ContainerState | undefined> {
    try {
      const { State } = await own(container).inspect();
      return { running: State.Running, pid: State.Pid, oomKilled: State.OOMKilled };
    } catch (error) {
      if (notFound(error)) return undefined;
      throw error;
    }
  }

  async logs(container: ContainerRef, tail: number): Promise<string> {
    const raw = await own(container).logs({ stdout: true, stderr: true, tail });
    return demuxLogs(Buffer.from(raw));
  }

  async kill(container: ContainerRef, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    await own(container).kill({ signal });
  }

  async update(container: ContainerRef, resources: ContainerResources): Promise<void> {
    await own(container).update(resources);
  }

  async remove(container: ContainerRef): Promise<boolean> {
    try {
      await own(container).remove({ force: true });
      return true;
    } catch (error) {
      if (notFound(error)) return false;
      throw error;
    }
  }

  async listByLabels(labels: string[]): Promise<ListedContainer[]> {
    const listed = await this.docker.listContainers({ all: true, filters: { label: labels } });
    return listed.map((c) => ({ id: c.Id, labels: c.Labels }));
  }

  async imageExists(tag: string): Promise<boolean> {
    try {
      await this.docker.getImage(tag).inspect();
      return true;
    } catch (error) {
      if (notFound(error)) return false;
      throw error;
    }
  }

  buildImage(context: NodeJS.ReadableStream, options: ImageBuild): Promise<NodeJS.ReadableStream> {
    return this.docker.buildImage(context, {
      t: options.tag,
      buildargs: options.buildargs,
      labels: options.labels,
      rm: true,
      forcerm: true,
    });
  }

  followBuild(progress: NodeJS.ReadableStream, onEvent: (event: BuildEvent) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.docker.modem.followProgress(
        progress,
        (error: Error | null) => (error === null ? resolve() : reject(error)),
        onEvent,
      );
    });
  }
}

/** One engine client per dockerode client: what the backend remembers per engine client is then per engine. */
const wrapped = new WeakMap<Dockerode, DockerodeClient>();

/** `docker` as an engine client: a dockerode client is wrapped, an engine client is itself. */
export function engineClientOf(docker: Dockerode | EngineClient): EngineClient {
  if (!isDockerode(docker)) return docker;
  let client = wrapped.get(docker);
  if (client === undefined) {
    client = new DockerodeClient(docker);
    wrapped.set(docker, client);
  }
  return client;
}

/**
 * The engine at `socketPath`, else dockerode's default ($DOCKER_HOST, else the local socket: see
 * localEngineSocket in sweep.ts), `timeoutMs` per request.
 */
export function defaultEngineClient(timeoutMs: number, socketPath?: string): EngineClient {
  const Docker = loadDockerode();
  return new DockerodeClient(
    new Docker(socketPath === undefined ? { timeout: timeoutMs } : { socketPath, timeout: timeoutMs }),
  );
}

/**
 * dockerode, loaded when a host first makes its own engine client: with its dependencies (docker-modem, ssh2,
 * @grpc/grpc-js, protobufjs) it is a third of a host's heap (5.6 MiB of 19, measured) and most of its import time,
 * which a host without container-mode plugins never needs. A CommonJS package, so required synchronously.
 */
let dockerode: typeof Dockerode | undefined;
function loadDockerode(): typeof Dockerode {
  dockerode ??= createRequire(import.meta.url)('dockerode') as typeof Dockerode;
  return dockerode;
}

/** By its modem (every dockerode client has one): an embedder's dockerode may be another copy of the package. */
function isDockerode(docker: Dockerode | EngineClient): docker is Dockerode {
  return 'modem' in docker;
}

function own(container: ContainerRef): Dockerode.Container {
  return container as Dockerode.Container;
}

function notFound(error: unknown): boolean {
  return (error as { statusCode?: number }).statusCode === 404;
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
