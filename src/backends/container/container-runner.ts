import { closeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { ReedError } from '../../errors.js';
import type { PluginSpec } from '../../protocol/messages.js';
import { dialArguments } from '../../transport/transport.js';
import type { TenantCgroup, TenantCgroupSlot } from '../process/cgroup.js';
import { type SandboxUsage, usageOfPid } from '../shared/cgroup-usage.js';
import { openDataDir, takeDataDirBack } from '../shared/data-dir.js';
import { type DataGroup, holdDataGroup } from '../shared/data-group.js';
import { DockerDemux, OutputPump } from '../shared/output-pump.js';
import type { Runner } from '../shared/runner.js';
import { type EndpointOptions, RunnerEndpoint } from '../shared/runner-endpoint.js';
import type { RunnerLink } from '../shared/runner-link.js';
import { PACKAGE_ROOT, raceStart } from '../shared/runner-program.js';
import { DEFAULT_RUNNER_UIDS, type UidRange } from '../shared/uid-pool.js';
import { CONTAINER_USER, type ContainerSettings, containerSpec, SOCKET_DIR } from './container-spec.js';
import {
  type ContainerRef,
  type ContainerResources,
  type ContainerSpec,
  type EngineClient,
  engineError,
} from './engine-client.js';

export interface ContainerRunnerOptions extends EndpointOptions, ContainerSettings {
  spec: PluginSpec;
  bytes: Uint8Array;
  engine: EngineClient;
  /** Where a data directory's group is leased from (`[sandbox] runner_uids`). Default 600000-699999. */
  runnerUids?: UidRange | undefined;
  /**
   * The host's tenant's cgroup (cgroupfs engines: the backend checked), which becomes the container's
   * CgroupParent: the tenant's containers share its memory_mb and cpu_weight.
   */
  tenantCgroup?: TenantCgroupSlot | undefined;
  /**
   * A warm container of a pool (`launch`ed with the pool's options, `assign`ed a plugin later). Its name is the one
   * a fresh container of its sandbox directory gets (`containerName`: the plugin is not in it), so its hand-out needs
   * no rename (an engine round trip: 43 ms p50 at load 17 here).
   */
  warm?: boolean;
  /**
   * The image and labels, made when the container is (a plugin's image is built then, not before: a plan that fits
   * the pool builds it only when no warm container was ready). Overrides `image`, `labels` (and `tenantCgroup`).
   */
  prepare?: () => Promise<{
    image: string;
    labels: Record<string, string>;
    tenantCgroup?: TenantCgroupSlot | undefined;
  }>;
}

/** The limits of a container the engine's update changes, for a plugin's limits (containerSpec's own formula). */
export function containerResources(spec: ContainerSpec): ContainerResources {
  const h = spec.HostConfig;
  return { Memory: h.Memory, MemorySwap: h.MemorySwap, NanoCpus: h.NanoCpus, PidsLimit: h.PidsLimit };
}

/** A runner in a per-plugin container (hardened: see containerSpec), made and watched through an engine client. */
export class ContainerRunner implements Runner {
  #o: ContainerRunnerOptions;
  readonly #endpoint: RunnerEndpoint;
  #container: ContainerRef | undefined;
  #running = false;
  #dataGroup: DataGroup | undefined;
  pid: number | undefined;
  stderrTail = '';
  exited: Promise<{ code: number | null; signal: string | null }> = new Promise(() => {});
  /** The tenant's cgroup the container's is under (held until destroy), and its failure count at the start. */
  tenantCgroup: TenantCgroup | undefined;
  #tenantHeld = false;
  #tenantFailures = 0;
  #exitCode: number | null | undefined;

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

  /** The container's cgroup accounting, found through its init's /proc/<pid>/cgroup (the engine made that cgroup). */
  usage(): SandboxUsage | undefined {
    return this.pid === undefined || !this.#running ? undefined : usageOfPid(this.pid);
  }

  /** The container, as the engine client knows it (dockerode's Container with the default client). */
  get container(): ContainerRef | undefined {
    return this.#container;
  }

  async start(): Promise<void> {
    if (this.#assigned !== undefined) return this.#handOut(this.#assigned);
    await this.#create();
    await this.#ready(this.#endpoint.serve(this.#o.spec, this.#o.bytes, this.#o.dataDir));
  }

  /**
   * A warm container (src/backends/pool/): made, hardened, started and connected as `start` does, with the pool's
   * options (no plugin yet), up to the point where it would be sent a plugin.
   */
  async launch(): Promise<void> {
    await this.#create();
    await this.#ready(this.#endpoint.connect());
    this.#launched = true;
  }

  #launched = false;
  #assigned: ContainerRunnerOptions | undefined;
  #handedOut: (() => void) | undefined;

  /** Whether it was a warm container of a pool, handed to its plugin (the start reports it). */
  get pooled(): boolean {
    return this.#assigned !== undefined;
  }

  /**
   * A launched warm container becomes this plugin's: its `start` hands it out. Only what the pool's shape matched
   * (`fitsContainerPool` in backend.ts) may differ from the pool's: the spec, bytes, host, logger, and the limits the
   * engine's update changes (memory, CPU, pids); never the network, a data directory, the tmpfs, the runtime.
   */
  assign(options: ContainerRunnerOptions, handedOut?: () => void): void {
    if (!this.#launched || this.#assigned !== undefined)
      throw new Error('only a launched warm container is assigned a plugin, once');
    this.#assigned = options;
    this.#handedOut = handedOut;
  }

  /** The hand-out, then (ready or not) `handedOut`: the pool launches the replacement (WarmPool.handedOut). */
  async #handOut(options: ContainerRunnerOptions): Promise<void> {
    try {
      await this.#sendPlugin(options);
    } finally {
      this.#handedOut?.();
    }
  }

  /**
   * The plugin's limits through the engine's update (when they are not the pool's), then the Welcome and the owner
   * record naming the plugin. The name needs nothing (a fresh container of this sandbox directory has the same); the
   * labels stay the pool's (the engine cannot change them): docs/ARCHITECTURE.md, "Warm pools".
   */
  async #sendPlugin(options: ContainerRunnerOptions): Promise<void> {
    const warm = this.#o;
    const container = this.#container as ContainerRef;
    this.#o = {
      ...warm,
      ...options,
      runAs: warm.runAs,
      privateWorkDir: true,
      runnerSocketPath: warm.runnerSocketPath,
      tenantCgroup: warm.tenantCgroup,
      warm: false,
    };
    const o = this.#o;
    this.#endpoint.adopt(o);
    const dir = this.#endpoint.dir;
    const wanted = containerResources(containerSpec(o, dir, []));
    const had = containerResources(containerSpec(warm, dir, []));
    const changed = JSON.stringify(wanted) !== JSON.stringify(had);
    if (changed && o.runtime === 'runsc') {
      // backend.ts never hands a runsc container to other limits: gVisor has no update.
      throw new ReedError(
        'sandbox_start_failed',
        `the limits of plugin "${o.pluginId}" cannot be applied to a warm gVisor container (runsc has no update)`,
        { pluginId: o.pluginId },
      );
    }
    const { engine } = o;
    const failed = (what: string) => (error: unknown) => {
      throw engineError(
        error,
        `the ${what} of plugin "${o.pluginId}" could not be applied to a warm container`,
        'sandbox_start_failed',
      );
    };
    // The limits before the Welcome: no plugin code runs under the pool's.
    if (changed) await engine.update(container, wanted).catch(failed('limits'));
    const ready = this.#ready(this.#endpoint.serve(o.spec, o.bytes, o.dataDir));
    // The owner record names the plugin once the Welcome is out, while the runner loads it: written at once (as at
    // create; on the thread pool its four round trips ended after the Ready on a loaded machine, runner-process.ts).
    const owner = new Promise((resolve) => setImmediate(resolve)).then(() => this.#endpoint.writeOwner());
    await Promise.all([ready, owner]);
  }

  /** Makes the container and starts it (the data directory's group, the socket, the secret, the engine's part). */
  async #create(): Promise<void> {
    const o = this.#o;
    if (o.prepare !== undefined) this.#o = { ...this.#o, ...(await o.prepare()) };
    // First: a host that cannot hand the data directory over is refused before anything is made.
    if (o.dataDir !== undefined) await this.#handDataDir(o.dataDir.hostPath);
    await this.#endpoint.listen();
    // The secret goes in a file only the container's user can read, in a directory it cannot write (the host
    // removes the file once the runner has authenticated).
    this.#endpoint.writeSecretFile(CONTAINER_USER);
    const runtimes = await registeredRuntimes(o.engine);
    if (!runtimes.includes(o.runtime)) {
      // Fail closed: never fall back to runc when runsc was asked for.
      throw new ReedError(
        'runtime_unavailable',
        `container runtime "${o.runtime}" is not registered with the Docker engine (it has: ${runtimes.join(', ')})`,
        { pluginId: o.pluginId },
      );
    }
    try {
      await this.#launch();
    } catch (error) {
      if (error instanceof ReedError) throw error;
      throw engineError(
        error,
        `cannot start the container of plugin "${o.pluginId}"`,
        'sandbox_start_failed',
      );
    }
  }

  /** Waits for `step` (the connection, or the plugin loaded) or the container's end, within the start timeout. */
  async #ready(step: Promise<void>): Promise<void> {
    const o = this.#o;
    try {
      await raceStart(step, this.exited, o.startTimeoutMs, o.pluginId, () => this.stderrTail);
    } catch (error) {
      // Put what the container said into the error: a container that never connects back is a mystery otherwise.
      const logs = await this.#logs();
      throw new ReedError(
        (error as ReedError).code ?? 'sandbox_start_failed',
        `${(error as Error).message}${logs === '' ? '' : `; container logs: ${logs}`}`,
        { pluginId: o.pluginId, cause: error },
      );
    }
  }

  /**
   * The data directory's group: one leased for the directory from `runner_uids` (data-group.ts), shared with every
   * other sandbox of the directory in this host (a drain's old and new, process mode's runners), which the
   * container runs as (65534:<gid>). Not 65534 (nogroup), which any daemon of the machine may have.
   */
  async #handDataDir(path: string): Promise<void> {
    const o = this.#o;
    if (process.getuid?.() !== 0) {
      throw new ReedError(
        'data_dir_unavailable',
        `the data directory of plugin "${o.pluginId}" cannot be given to its container: ${path}: container mode hands it to a group leased from [sandbox] runner_uids, which only a host running as root can give a directory; run the host as root`,
        { pluginId: o.pluginId },
      );
    }
    this.#dataGroup = await holdDataGroup(path, o.runnerUids ?? DEFAULT_RUNNER_UIDS, o.pluginId);
    closeSync(openDataDir(o.pluginId, path, { gid: this.#dataGroup.gid }));
  }

  /** The container is gone: the tenant's cgroup may go with the tenant's last container. */
  #releaseTenant(): void {
    if (!this.#tenantHeld) return;
    this.#tenantHeld = false;
    this.#o.tenantCgroup?.release();
  }

  /** Once nothing of the container runs: the last sandbox of the directory gives it back to the host's group. */
  #giveDataDirBack(): void {
    const path = this.#o.dataDir?.hostPath;
    const group = this.#dataGroup;
    this.#dataGroup = undefined;
    if (path === undefined || group === undefined) return;
    group.release((gid) =>
      takeDataDirBack(path, gid, (message) => this.#o.logger.warn({ pluginId: this.#o.pluginId }, message)),
    );
  }

  /** Creates the container, follows its output and its exit, and starts it. */
  async #launch(): Promise<void> {
    const { engine } = this.#o;
    const dial = dialArguments(this.#endpoint.addressForRunner());
    if (this.#o.tenantCgroup !== undefined && !this.#tenantHeld) {
      this.tenantCgroup = this.#o.tenantCgroup.acquire();
      this.#tenantHeld = true;
      this.#tenantFailures = this.tenantCgroup?.memoryFailures() ?? 0;
    }
    const parent = this.tenantCgroup === undefined ? undefined : `/reed/${this.tenantCgroup.name}`;
    const settings = { ...this.#o, cgroupParent: parent };
    const spec = containerSpec(
      settings,
      this.#endpoint.dir,
      dial,
      this.#dataGroup?.gid ?? CONTAINER_USER.gid,
    );
    let container: ContainerRef;
    try {
      container = await engine.create(spec);
    } catch (error) {
      // The engine may have made it and gone before it answered (restarted mid-request): a container no one would
      // hold, left in its "created" state. Removed by its name once the engine answers again, as a failed removal
      // is (nothing to remove: the engine says so, and that is the end of it). test/integration/engine-restart.
      leftovers(engine).set(spec.name, () => {});
      throw error;
    }
    this.#container = container;
    // The engine answers again: remove what could not be removed while it did not.
    void removeLeftovers(engine);
    this.#pumpOutput(await engine.attach(container));
    this.exited = engine.waitExit(container).then(
      (code) => {
        this.#running = false;
        this.#exitCode = code;
        return { code, signal: null };
      },
      () => {
        this.#running = false;
        return { code: null, signal: null };
      },
    );
    await engine.start(container);
    this.#running = true;
    // The pid is only for reports: fetch it off the start path.
    void engine
      .inspect(container)
      .then((state) => {
        this.pid = state?.pid;
      })
      .catch(() => {});
  }

  /** Bounded whatever the runner writes (output-pump.ts); the stderr tail (for start errors) stays 4 KiB. */
  #pumpOutput(stream: NodeJS.ReadableStream): void {
    const o = this.#o;
    new DockerDemux(
      new OutputPump({
        pluginId: o.pluginId,
        logger: o.logger,
        onLine: (level, line) => {
          if (level === 2) this.stderrTail = `${this.stderrTail}\n${line}`.slice(-4096);
          // The host of the plugin it runs now (a warm container's is the pool's until its hand-out).
          this.#o.host.log(level, line);
        },
      }),
    ).attach(stream as Readable);
  }

  async #logs(): Promise<string> {
    if (this.#container === undefined) return '';
    try {
      return (await this.#o.engine.logs(this.#container, 40)).trim().slice(-2000);
    } catch {
      return '';
    }
  }

  async oomKilled(): Promise<boolean> {
    if (this.#container === undefined) return false;
    if (this.#tenantKilled()) return true;
    try {
      return (await this.#o.engine.inspect(this.#container))?.oomKilled === true;
    } catch {
      return false;
    }
  }

  /**
   * Killed (137: its init's child died of SIGKILL) while the tenant's cgroup reached its memory limit: the
   * kernel's OOM killer enforced the tenant's memory_mb, above the container's own limit.
   */
  #tenantKilled(): boolean {
    const tenant = this.tenantCgroup;
    return (
      tenant !== undefined &&
      this.#o.tenantCgroup?.quotas.memoryMb !== undefined &&
      this.#exitCode === 137 &&
      tenant.memoryFailures() > this.#tenantFailures
    );
  }

  async tenantMemoryQuota(): Promise<{ limitMb: number; tenant: string } | undefined> {
    const limitMb = this.#o.tenantCgroup?.quotas.memoryMb;
    const tenant = this.#o.tenantCgroup?.quotas.tenant ?? '';
    return limitMb !== undefined && this.#tenantKilled() ? { limitMb, tenant } : undefined;
  }

  kill(): void {
    this.#signal('SIGKILL');
  }

  terminate(): void {
    this.#signal('SIGTERM');
  }

  #signal(signal: 'SIGKILL' | 'SIGTERM'): void {
    if (this.#container !== undefined) void this.#o.engine.kill(this.#container, signal).catch(() => {});
  }

  /**
   * Removes the container (whatever its state) and the sandbox directory, and lets the data directory's group go.
   * A container the engine could not remove may still run as that group: the group is let go only once a later
   * attempt removes it. Idempotent.
   */
  async destroy(): Promise<void> {
    this.link?.destroy();
    const container = this.#container;
    const giveBack = () => this.#giveDataDirBack();
    if (container !== undefined) {
      const { engine } = this.#o;
      const removed = await engine.remove(container).then(
        () => true,
        () => {
          leftovers(engine).set(container.id, giveBack);
          return false;
        },
      );
      this.#running = false;
      if (removed) {
        giveBack();
        this.#releaseTenant();
      }
    } else {
      giveBack();
      this.#releaseTenant();
    }
    await this.#endpoint.close();
  }
}

/**
 * Containers whose removal failed (the engine did not answer), and those whose create got no answer (by name: the
 * engine may have made them), per engine client, each with what to do once it is
 * gone (give its data directory's group back): removed when a later container start shows the engine answers
 * again. Those of a host that exits first go with its session in the next host's sweep.
 */
const unremoved = new WeakMap<EngineClient, Map<string, () => void>>();

function leftovers(engine: EngineClient): Map<string, () => void> {
  let map = unremoved.get(engine);
  if (map === undefined) {
    map = new Map();
    unremoved.set(engine, map);
  }
  return map;
}

async function removeLeftovers(engine: EngineClient): Promise<void> {
  const map = unremoved.get(engine);
  for (const [id, gone] of [...(map ?? [])]) {
    try {
      await engine.remove(engine.container(id));
      map?.delete(id);
      gone();
    } catch {
      // Still unanswered: the next start tries again.
    }
  }
}

const runtimeCache = new WeakMap<EngineClient, { at: number; runtimes: string[] }>();

/** The engine's registered runtimes, asked at most every 10 s (they change only when the engine restarts). */
async function registeredRuntimes(engine: EngineClient): Promise<string[]> {
  const cached = runtimeCache.get(engine);
  if (cached !== undefined && Date.now() - cached.at < 10_000) return cached.runtimes;
  const runtimes = await engine.runtimes().catch((e: unknown) => {
    throw engineError(e, 'cannot reach the Docker engine', 'sandbox_start_failed');
  });
  runtimeCache.set(engine, { at: Date.now(), runtimes });
  return runtimes;
}
