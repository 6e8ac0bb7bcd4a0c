import type { Code } from '../../codes.js';
import { ReedError } from '../../errors.js';

/**
 * What the container backend asks of a container engine, and nothing more (as testcontainers keeps its engine
 * behind a container client): the runner, the images, the sweep and the backend use only this.
 * dockerode-client.ts is today's implementation; another engine or library is another one.
 *
 * Failures reject with the engine library's own error: `code` set (ECONNREFUSED, ETIMEDOUT...) when the engine
 * did not answer, `statusCode` when it answered with an HTTP error; `engineError` turns either into a ReedError.
 */
export interface EngineClient {
  /** Where the engine is: two clients with the same address reach the same engine, and share its images. */
  readonly address: string;
  /** The OCI runtimes registered with the engine (runc, runsc...). */
  runtimes(): Promise<string[]>;
  /** How the engine makes containers' cgroups: `cgroupfs` (paths under /sys/fs/cgroup) or `systemd` (slices). */
  cgroupDriver(): Promise<string>;

  /** A container by id (one of ours, or one a label names); no request is made. */
  container(id: string): ContainerRef;
  create(spec: ContainerSpec): Promise<ContainerRef>;
  /** The container's stdout and stderr as they come, in Docker's multiplexed framing (see DockerDemux). */
  attach(container: ContainerRef): Promise<NodeJS.ReadableStream>;
  /** The exit code of the container's next exit (not of its state now: a created container is not running). */
  waitExit(container: ContainerRef): Promise<number | null>;
  start(container: ContainerRef): Promise<void>;
  /** Its state, or undefined when there is no such container. */
  inspect(container: ContainerRef): Promise<ContainerState | undefined>;
  /** The last `tail` lines of stdout and stderr, as text. */
  logs(container: ContainerRef, tail: number): Promise<string>;
  kill(container: ContainerRef, signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /**
   * Changes a running container's resource limits (the engine's container update: its cgroup). A warm container of
   * a pool gets its plugin's limits this way (container-runner.ts, the hand-out). runc only: runsc has no update.
   */
  update(container: ContainerRef, resources: ContainerResources): Promise<void>;
  /** Removes it whatever its state: true, or false when it was already gone. */
  remove(container: ContainerRef): Promise<boolean>;
  /** Every container (running or not) that carries all of `labels` (`key=value`, or `key` for any value). */
  listByLabels(labels: string[]): Promise<ListedContainer[]>;

  imageExists(tag: string): Promise<boolean>;
  /** Starts a build from a tar stream of the context; the returned stream reports its progress. */
  buildImage(context: NodeJS.ReadableStream, options: ImageBuild): Promise<NodeJS.ReadableStream>;
  /** Follows a build's progress to its end: rejects when the stream fails, not when a step fails (see BuildEvent). */
  followBuild(progress: NodeJS.ReadableStream, onEvent: (event: BuildEvent) => void): Promise<void>;
}

/** A container as the client that made or found it knows it: pass it back to the same client. */
export interface ContainerRef {
  readonly id: string;
}

export interface ContainerState {
  running: boolean;
  pid: number | undefined;
  oomKilled: boolean;
}

/** The limits `update` sets, in the Engine API's field names (HostConfig's). */
export interface ContainerResources {
  Memory: number;
  MemorySwap: number;
  NanoCpus: number;
  PidsLimit: number;
}

export interface ListedContainer {
  id: string;
  labels: Record<string, string>;
}

/** A container to create, in the Docker Engine API's own field names (only those the backend sets). */
export interface ContainerSpec {
  name: string;
  Image: string;
  Entrypoint?: string[];
  Cmd: string[];
  User: string;
  WorkingDir: string;
  Env: string[];
  Labels: Record<string, string>;
  AttachStdout: boolean;
  AttachStderr: boolean;
  HostConfig: {
    Runtime: string;
    CapDrop: string[];
    SecurityOpt: string[];
    Privileged: boolean;
    ReadonlyRootfs: boolean;
    Tmpfs: Record<string, string>;
    Memory: number;
    MemorySwap: number;
    NanoCpus: number;
    PidsLimit: number;
    Ulimits: { Name: string; Soft: number; Hard: number }[];
    NetworkMode: string;
    Init: boolean;
    IpcMode: string;
    LogConfig: { Type: string; Config: Record<string, string> };
    ShmSize: number;
    Binds: string[];
    /** The cgroup the container's goes under (a tenant's, with its memory_mb and cpu_weight). */
    CgroupParent?: string;
    /** Bind mounts by field (a path holding ':' cannot go in Binds); a missing source is an error, never made. */
    Mounts?: { Type: 'bind'; Source: string; Target: string; ReadOnly: boolean }[];
  };
}

export interface ImageBuild {
  tag: string;
  buildargs: Record<string, string>;
  labels: Record<string, string>;
}

/** One line of a build's progress, as the engine writes it: a step's output, or the error that ended the build. */
export interface BuildEvent {
  stream?: string;
  error?: string;
  errorDetail?: { message?: string };
}

/** Socket errors that mean the engine is not there (or went away mid-request), whatever was asked. */
const ENGINE_GONE = new Set(['ECONNREFUSED', 'ENOENT', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EACCES']);

/**
 * An engine failure as a ReedError: `docker_unavailable` when the engine does not answer, else `otherwise` (the
 * code of what was being done) with the engine's message.
 */
export function engineError(error: unknown, what: string, otherwise: Code = 'image_build_failed'): ReedError {
  const e = error as { code?: string; statusCode?: number; message?: string };
  if ((e.code !== undefined && ENGINE_GONE.has(e.code)) || /timeout|socket hang up/i.test(e.message ?? '')) {
    return new ReedError(
      'docker_unavailable',
      `${what}: the Docker engine does not answer (${e.code ?? e.message})`,
      { cause: error },
    );
  }
  return new ReedError(otherwise, `${what}: ${e.message ?? String(error)}`, { cause: error });
}
