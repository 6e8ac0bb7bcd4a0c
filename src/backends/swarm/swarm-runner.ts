import { randomBytes } from 'node:crypto';
import { ReedError } from '../../errors.js';
import type { PluginSpec } from '../../protocol/messages.js';
import { type TlsListenerMaterial, TlsRunnerTransport } from '../../transport/tls-transport.js';
import { dialArguments } from '../../transport/transport.js';
import { CONTAINER_USER } from '../container/container-spec.js';
import type { Dockerode } from '../container/dockerode-client.js';
import { engineError } from '../container/engine-client.js';
import { LABEL_PLUGIN_ID, LABEL_SESSION } from '../container/labels.js';
import type { Runner } from '../shared/runner.js';
import { type EndpointOptions, RunnerEndpoint } from '../shared/runner-endpoint.js';
import type { RunnerLink } from '../shared/runner-link.js';
import { PACKAGE_ROOT, raceStart } from '../shared/runner-program.js';
import {
  LABEL_SWARM_KIND,
  networkSpec,
  SECRET_TARGET,
  serviceSpec,
  swarmLabels,
  swarmName,
} from './service-spec.js';
import { removeSwarmResources } from './sweep.js';

/** The label that names one runner's service, network, secret (and relay): what its removal selects by. */
export const LABEL_SWARM_RUNNER = 'reed.swarm.runner';
/** The name the orchestrator has on each runner's network: what the runner dials. */
export const ORCHESTRATOR_ALIAS = 'reed-orchestrator';
/** The port a relay listens on (relay mode): the runner dials ORCHESTRATOR_ALIAS:RELAY_PORT. */
export const RELAY_PORT = 7000;
/** How often a runner's task is looked at (its state is its exit). */
const WATCH_MS = 1_000;
/** How long a new runner's placement waits for the swarm to give its task a node before the next one is placed. */
const PLACEMENT_WAIT_MS = 15_000;
/** Task states after which a task never runs again. */
const ENDED = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned', 'remove']);

/**
 * The runner's task once it has dialed in: the one the swarm wants running and that has not ended (a service has
 * one such task at a time; the ones before it, which failed or were replaced, are wanted shut down). Not only a
 * task in state `running`: a worker reports its task's state to the manager in batches, so a runner can dial in
 * and finish its hello while the manager still says `starting`. Taking only `running` tasks then left the runner
 * with no task to watch, and a node lost without a word (no FIN from it: a machine losing power) was never seen.
 */
export function liveTask(tasks: readonly TaskView[]): string | undefined {
  return tasks.find((t) => t.DesiredState === 'running' && !ENDED.has(t.Status?.State ?? ''))?.ID;
}

/**
 * How runners reach the orchestrator's TLS listener on their network, which is internal (no route out):
 * - `container`: the orchestrator runs in a container of the manager's engine (its id): that container joins each
 *   runner's network under ORCHESTRATOR_ALIAS, and the runner dials the listener's port there (production).
 * - `relay`: the orchestrator runs on a machine the manager reaches (`hostAddress`, where it listens): a small
 *   relay container on the manager joins each runner's network under ORCHESTRATOR_ALIAS and passes the bytes
 *   (TLS, end to end) to the listener (tests, an orchestrator outside Docker). The relay never sees a key.
 */
export type SwarmReach = { kind: 'container'; containerId: string } | { kind: 'relay'; hostAddress: string };

export interface SwarmRunnerOptions extends EndpointOptions {
  spec: PluginSpec;
  bytes: Uint8Array;
  version: string;
  /** The swarm manager's Docker client. */
  docker: Dockerode;
  /** `registry/reed-runner@sha256:...` (registry.ts). */
  image: string;
  runtime: 'runc' | 'runsc';
  /** The orchestrator's server certificate, CA, name and where it listens. */
  tls: TlsListenerMaterial;
  reach: SwarmReach;
  /** More placement constraints for the runner's task (tests pin a node). */
  constraints?: string[] | undefined;
  /**
   * Keep off the nodes where the plugin's other runners run, while another node is ready (a replica's first
   * runner). Not for a runner that replaces a lost one: the manager may not see the lost node down yet, and would
   * find no node for it; without the constraint the swarm places it, and moves it once it sees the node down.
   */
  spread?: boolean;
  /** Cleanups that outlive `destroy` (a network whose endpoints are still leaving): the backend awaits them at close. */
  pending: Set<Promise<unknown>>;
}

export interface TaskView {
  ID?: string;
  NodeID?: string;
  DesiredState?: string;
  Status?: { State?: string; Err?: string; ContainerStatus?: { ExitCode?: number } };
}

/**
 * A runner as a Swarm service of one replica (docs/SCALE.md): a network of its own (internal overlay), its
 * one-time secret as a Docker secret, the hardened service (service-spec.ts), and a TLS listener of its own that
 * the task dials. Its exit is its task's: the task that answered ends (a terminal state, desired state no longer
 * running, its node down) or the service is gone. Kill and destroy remove the service; destroy removes the rest.
 */
export class SwarmRunner implements Runner {
  readonly #o: SwarmRunnerOptions;
  readonly #endpoint: RunnerEndpoint;
  /** The runner's name: its service's, network's and secret's, and the value of LABEL_SWARM_RUNNER. */
  readonly name: string;
  #serviceId: string | undefined;
  #relayId: string | undefined;
  #running = false;
  #stopped = false;
  #watch: NodeJS.Timeout | undefined;
  #connectedTask: string | undefined;
  #exit: ((e: { code: number | null; signal: string | null }) => void) | undefined;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  readonly pid = undefined;
  stderrTail = '';
  readonly isolation = {
    enforced: ['swarm service: read-only root, no capabilities, uid 65534, limits, internal overlay network'],
    notEnforced: [
      'per-service no-new-privileges (engine-wide), swap, seccomp profile of our own (docs/SCALE.md)',
    ],
  };

  constructor(options: SwarmRunnerOptions) {
    this.#o = options;
    this.name = `${swarmName(options.session, options.pluginId)}-${randomBytes(3).toString('hex')}`;
    this.exited = new Promise((resolve) => {
      this.#exit = (e) => {
        this.#running = false;
        if (this.#watch !== undefined) clearInterval(this.#watch);
        this.#watch = undefined;
        resolve(e);
      };
    });
    const reach = options.reach;
    this.#endpoint = new RunnerEndpoint(
      {
        ...options,
        transport: (refused) =>
          new TlsRunnerTransport({
            ...options.tls,
            ...(reach.kind === 'relay'
              ? { advertise: { host: ORCHESTRATOR_ALIAS, port: RELAY_PORT } }
              : { advertise: { host: ORCHESTRATOR_ALIAS } }),
            handshakeTimeoutMs: options.startTimeoutMs,
            refused,
            handshakeFailed: (error) =>
              options.logger.warn(
                { pluginId: options.pluginId, code: 'handshake_failed' },
                `a connection to the sandbox's TLS port failed its handshake: ${error.message.slice(0, 200)}`,
              ),
          }),
      },
      PACKAGE_ROOT,
    );
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

  #labels(kind: 'service' | 'network' | 'secret' | 'relay'): Record<string, string> {
    const o = this.#o;
    return {
      ...swarmLabels({ id: o.pluginId, version: o.version }, o.session, kind),
      [LABEL_SWARM_RUNNER]: this.name,
    };
  }

  async start(): Promise<void> {
    const o = this.#o;
    await this.#endpoint.listen();
    try {
      await this.#launch();
    } catch (error) {
      if (error instanceof ReedError) throw error;
      throw engineError(
        error,
        `cannot start the swarm service of plugin "${o.pluginId}"`,
        'sandbox_start_failed',
      );
    }
    await raceStart(
      this.#endpoint.serve(o.spec, o.bytes),
      this.exited,
      o.startTimeoutMs,
      o.pluginId,
      () => this.stderrTail,
    );
    // The task that answered: its end is this runner's exit.
    this.#connectedTask = liveTask(await this.#tasks());
    // One connection per runner: once it has closed (the runner's Bye and exit at a stop, a crash, a link the host
    // ended), a task the swarm restarts (RestartPolicy any, 1 s later) could only dial in to be refused. So the
    // service goes at once, after one look at the task for its exit code (the supervisor's account of the end).
    this.link?.onClose(() => {
      void this.#look().finally(() => this.#removeService('removed'));
    });
  }

  /** The network, the orchestrator's way onto it, the secret, the service; then the watch on its task. */
  async #launch(): Promise<void> {
    const o = this.#o;
    const { docker } = o;
    const plugin = { id: o.pluginId, version: o.version };
    const network = await docker.createNetwork({
      ...networkSpec(plugin, o.session),
      Name: this.name,
      Labels: this.#labels('network'),
    });
    if (o.reach.kind === 'container') {
      await network.connect({
        Container: o.reach.containerId,
        EndpointConfig: { Aliases: [ORCHESTRATOR_ALIAS] },
      });
    } else {
      const transport = this.#endpoint.transport as TlsRunnerTransport;
      const relay = await docker.createContainer({
        name: `${this.name}-relay`,
        Image: o.image,
        Entrypoint: ['/usr/local/bin/node'],
        Cmd: ['-e', RELAY_SCRIPT, o.reach.hostAddress, String(transport.port), String(RELAY_PORT)],
        User: `${CONTAINER_USER.uid}:${CONTAINER_USER.gid}`,
        Labels: this.#labels('relay'),
        HostConfig: {
          NetworkMode: 'bridge',
          ReadonlyRootfs: true,
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          Memory: 64 * 1024 * 1024,
          PidsLimit: 32,
        },
      });
      this.#relayId = relay.id;
      await network.connect({ Container: relay.id, EndpointConfig: { Aliases: [ORCHESTRATOR_ALIAS] } });
      await relay.start();
    }
    const secret = (await docker.createSecret({
      Name: this.name,
      Labels: this.#labels('secret'),
      Data: Buffer.from(this.#endpoint.secret).toString('base64'),
    })) as { id: string };
    const material = (this.#endpoint.transport as TlsRunnerTransport).runnerMaterial();
    const spec = serviceSpec({
      pluginId: o.pluginId,
      version: o.version,
      limits: o.limits,
      session: o.session,
      image: o.image,
      runtime: o.runtime,
      replicas: 1,
      network: network.id,
      dial: dialArguments(material.address),
      env: [
        `REED_TLS_CA=${material.caPem}`,
        `REED_TLS_SERVERNAME=${material.servername}`,
        `REED_SECRET_FILE=/run/secrets/${SECRET_TARGET}`,
      ],
      secret: { id: secret.id, name: this.name },
    });
    spec.Name = this.name;
    spec.Labels = this.#labels('service');
    spec.TaskTemplate.ContainerSpec.Labels = spec.Labels;
    spec.TaskTemplate.Placement.Constraints.push(...(o.constraints ?? []));
    // One placement at a time per plugin: each replica sees where the others' tasks went.
    const release = await placementTurn(`${o.session.id}/${o.pluginId}`);
    try {
      if (o.spread === true) spec.TaskTemplate.Placement.Constraints.push(...(await this.#spread()));
      const service = (await docker.createService(spec)) as unknown as { id: string };
      this.#serviceId = service.id;
      const deadline = Date.now() + PLACEMENT_WAIT_MS;
      while (Date.now() < deadline && !(await this.#tasks()).some((t) => (t.NodeID ?? '') !== ''))
        await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      release();
    }
    this.#running = true;
    this.#watch = setInterval(() => void this.#look(), WATCH_MS);
    this.#watch.unref();
  }

  /**
   * Spread: constraints that keep this runner off the nodes where the plugin's other runners' tasks are, as long as
   * a ready, active node is left for it (Swarm spreads one service's tasks, not several services'; a plugin's
   * replicas are several services). With no such node, none: the swarm places it where it can.
   */
  async #spread(): Promise<string[]> {
    const o = this.#o;
    const { docker } = o;
    const services = await docker.listServices({
      filters: {
        label: [
          `${LABEL_PLUGIN_ID}=${o.pluginId}`,
          `${LABEL_SESSION}=${o.session.id}`,
          `${LABEL_SWARM_KIND}=service`,
        ],
      },
    });
    const ids = services.map((s) => s.ID ?? '').filter((id) => id !== '');
    if (ids.length === 0) return [];
    const tasks = (await docker.listTasks({
      filters: { service: ids, 'desired-state': ['running'] },
    })) as TaskView[];
    const used = new Set(tasks.map((t) => t.NodeID ?? '').filter((id) => id !== ''));
    const ready = (await docker.listNodes())
      .filter((n) => n.Status?.State === 'ready' && n.Spec?.Availability === 'active')
      .map((n) => n.ID ?? '');
    if (!ready.some((id) => id !== '' && !used.has(id))) return [];
    return [...used].map((id) => `node.id!=${id}`);
  }

  async #tasks(): Promise<TaskView[]> {
    if (this.#serviceId === undefined) return [];
    return (await this.#o.docker.listTasks({ filters: { service: [this.#serviceId] } })) as TaskView[];
  }

  #looking = false;

  /** One look at the runner's task: ended, or on a node the manager sees down, is the runner's exit. */
  async #look(): Promise<void> {
    if (this.#looking || this.#serviceId === undefined) return;
    this.#looking = true;
    try {
      const tasks = await this.#tasks();
      // What the swarm says of failed tasks (an image not pulled, a dial that failed): for start errors.
      const errors = tasks
        .map((t) => t.Status?.Err)
        .filter((e): e is string => typeof e === 'string' && e !== '');
      if (errors.length > 0) this.stderrTail = `task: ${errors.at(-1)?.slice(0, 500)}`;
      if (this.#connectedTask === undefined) {
        if (tasks.length === 0 && (await this.#serviceGone()))
          this.#exit?.({ code: null, signal: 'removed' });
        // Connected before the manager had its task's state (see liveTask): the task is the live one, once it has.
        if (this.link !== undefined) this.#connectedTask = liveTask(tasks);
        if (this.#connectedTask === undefined) return;
      }
      const task = tasks.find((t) => t.ID === this.#connectedTask);
      if (task === undefined) {
        this.#exit?.({ code: null, signal: 'removed' });
        return;
      }
      const state = task.Status?.State ?? '';
      if (task.DesiredState !== 'running' || ENDED.has(state)) {
        this.#exit?.({ code: task.Status?.ContainerStatus?.ExitCode ?? null, signal: null });
        return;
      }
      if (task.NodeID !== undefined) {
        const node = (await this.#o.docker.getNode(task.NodeID).inspect()) as { Status?: { State?: string } };
        if (node.Status?.State === 'down') this.#exit?.({ code: null, signal: 'node down' });
      }
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404)
        this.#exit?.({ code: null, signal: 'removed' });
      // Otherwise the manager did not answer this time: the next look asks again.
    } finally {
      this.#looking = false;
    }
  }

  async #serviceGone(): Promise<boolean> {
    try {
      await this.#o.docker.getService(this.#serviceId as string).inspect();
      return false;
    } catch (error) {
      return (error as { statusCode?: number }).statusCode === 404;
    }
  }

  /** Swarm does not say whether a task's container was OOM-killed in a way worth trusting here: never claimed. */
  async oomKilled(): Promise<boolean> {
    return false;
  }

  kill(): void {
    void this.#removeService();
  }

  terminate(): void {
    // Removing the service stops its task: SIGTERM, then SIGKILL after the spec's StopGracePeriod.
    void this.#removeService();
  }

  #removing: Promise<void> | undefined;

  /**
   * One removal, however many ask (the link's close, a kill, destroy): each waits for the same one. `signal`: the
   * exit it reports, when nothing reported one before (a kill's, or a removal's after the end).
   */
  #removeService(signal = 'SIGKILL'): Promise<void> {
    if (this.#serviceId === undefined) return Promise.resolve(); // nothing made yet to remove
    this.#removing ??= this.#remove(signal);
    return this.#removing;
  }

  async #remove(signal: string): Promise<void> {
    const id = this.#serviceId;
    if (id === undefined || this.#stopped) return;
    this.#stopped = true;
    try {
      await this.#o.docker.getService(id).remove();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404)
        this.#o.logger.warn(
          { pluginId: this.#o.pluginId, err: error },
          `could not remove swarm service ${this.name}; the host's close or the next sweep removes it`,
        );
    }
    this.#exit?.({ code: null, signal });
  }

  /**
   * Removes the service and the relay at once; the network (once the task's endpoint has left it) and the secret
   * after, off the supervisor's path (a task on a node that is gone holds its endpoint a while): the backend waits
   * for those at the host's close. Idempotent.
   */
  async destroy(): Promise<void> {
    this.link?.destroy();
    await this.#removeService();
    this.#exit?.({ code: null, signal: null });
    const docker = this.#o.docker;
    if (this.#relayId !== undefined) {
      const relay = this.#relayId;
      this.#relayId = undefined;
      await docker
        .getContainer(relay)
        .remove({ force: true })
        .catch(() => {});
    }
    await this.#endpoint.close();
    const rest = removeSwarmResources(docker, [`${LABEL_SWARM_RUNNER}=${this.name}`]).catch(
      (error: unknown) =>
        this.#o.logger.warn(
          { pluginId: this.#o.pluginId, err: error },
          `could not remove swarm network or secret ${this.name} yet; the host's close or the next sweep removes it`,
        ),
    );
    this.#o.pending.add(rest);
    void rest.finally(() => this.#o.pending.delete(rest));
  }
}

/**
 * The relay (relay mode): listens on argv[3] and passes each connection's bytes, both ways, to argv[1]:argv[2] (the
 * orchestrator's TLS listener). It holds no key and reads nothing: TLS runs end to end through it.
 */
const RELAY_SCRIPT = `const net = require('node:net');
const [host, port, listen] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(Number(port), host);
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
}).listen(Number(listen));`;

/** The placement queue of each plugin (session/plugin id): a runner's service is made after the one before is placed. */
const placements = new Map<string, Promise<void>>();

async function placementTurn(key: string): Promise<() => void> {
  const before = placements.get(key) ?? Promise.resolve();
  let release = () => {};
  const mine = new Promise<void>((resolve) => {
    release = resolve;
  });
  const tail = before.then(() => mine);
  placements.set(key, tail);
  void tail.then(() => {
    if (placements.get(key) === tail) placements.delete(key);
  });
  await before;
  return release;
}
