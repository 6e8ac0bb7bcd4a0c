import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRunnerImage } from '../../src/backends/container/images.js';
import { type HostSession, newSession } from '../../src/backends/shared/session.js';
import { publishImage } from '../../src/backends/swarm/registry.js';
import {
  networkSpec,
  SECRET_TARGET,
  serviceSpec,
  swarmLabels,
  swarmName,
} from '../../src/backends/swarm/service-spec.js';
import { removeSwarmResources, sweepSwarm } from '../../src/backends/swarm/sweep.js';
import { ReedError } from '../../src/errors.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import { ORCHESTRATOR_SERVERNAME, OrchestratorCa } from '../../src/pki/orchestrator-ca.js';
import { RunnerConnection } from '../../src/transport/connection.js';
import { TlsRunnerTransport } from '../../src/transport/tls-transport.js';
import { dialArguments } from '../../src/transport/transport.js';
import { startSwarm, swarmLeftovers, type TestSwarm, until } from '../helpers/swarm.js';

// A swarm of two Docker engines on this machine (scripts/swarm-up.sh: each its own dockerd, containerd, data root
// and network namespace, joined on a bridge; node 1 manages), the swarm's registry, and its teardown. The main
// engine is not used. Swarm 41: no other test file uses that number.
const NET = 41;

interface Task {
  NodeID: string;
  Status: { State: string };
  DesiredState: string;
}

describe('a two-engine swarm on one machine', () => {
  let swarm: TestSwarm;
  let down = false;
  /** The runner image as images.ts tags it on node 1, and how long its build took. */
  let local: string;
  let buildMs: number;

  beforeAll(async () => {
    swarm = await startSwarm({ net: NET, nodes: 2 });
    // biome-ignore lint/suspicious/noConsole: the swarm's set-up and teardown times (docs/SCALE.md)
    console.log(`swarm ${NET} up in ${Math.round(swarm.upMs)} ms`);
    // The runner image, built on the manager as container mode builds it (a fresh engine: a full build, under load
    // a minute or more).
    const started = performance.now();
    local = await ensureRunnerImage({ docker: swarm.manager, logger: pino({ level: 'silent' }) });
    buildMs = performance.now() - started;
  }, 600_000);

  afterAll(async () => {
    if (swarm !== undefined && !down) await swarm.down();
  }, 120_000);

  async function nodeIds(): Promise<Map<string, string>> {
    const nodes = await swarm.manager.listNodes();
    return new Map(nodes.map((n) => [n.Description?.Hostname ?? '', n.ID ?? '']));
  }

  async function runningTasks(service: string): Promise<Task[]> {
    const tasks = (await swarm.manager.listTasks({ filters: { service: [service] } })) as Task[];
    return tasks.filter((t) => t.Status.State === 'running' && t.DesiredState === 'running');
  }

  it('has two engines of their own, both Ready in one swarm', async () => {
    const nodes = await swarm.manager.listNodes();
    expect(nodes.map((n) => n.Description?.Hostname).sort()).toEqual([`rsw${NET}-n1`, `rsw${NET}-n2`]);
    expect(nodes.every((n) => n.Status?.State === 'ready')).toBe(true);
    const infos = await Promise.all(swarm.nodes.map((n) => n.docker.info()));
    expect(infos.map((i) => i.DockerRootDir)).toEqual([
      `/var/lib/reed-swarm/${NET}/n1`,
      `/var/lib/reed-swarm/${NET}/n2`,
    ]);
    expect(new Set(infos.map((i) => i.ID)).size).toBe(2);
    expect(infos.map((i) => i.Swarm.LocalNodeState)).toEqual(['active', 'active']);
  });

  it('gets the runner image to every node through the registry, pushed by its content hash', async () => {
    const node1 = swarm.nodes[0]?.docker;
    const node2 = swarm.nodes[1]?.docker;
    if (node1 === undefined || node2 === undefined) throw new Error('two nodes expected');
    const hash = local.split(':')[1] as string;
    const started = performance.now();
    const ref = await publishImage(node1, local, swarm.registry);
    // biome-ignore lint/suspicious/noConsole: the image's build and push times (docs/SCALE.md)
    console.log(
      `runner image built in ${Math.round(buildMs)} ms, pushed in ${Math.round(performance.now() - started)} ms`,
    );
    expect(ref).toMatch(
      new RegExp(`^${swarm.registry.replaceAll('.', '\\.')}/reed-runner@sha256:[0-9a-f]{64}$`),
    );
    // The registry knows it by the content hash.
    const tags = (await (await fetch(`http://${swarm.registry}/v2/reed-runner/tags/list`)).json()) as {
      tags: string[];
    };
    expect(tags.tags).toContain(hash);
    // Node 2 has never seen it: it pulls it from the registry when the swarm places a task there.
    await expect(node2.getImage(ref).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await swarm.manager.createService({
      Name: 'image-reach',
      TaskTemplate: {
        ContainerSpec: {
          Image: ref,
          Command: ['/usr/local/bin/node'],
          Args: ['-e', 'setInterval(() => {}, 1 << 30)'],
        },
        Placement: { MaxReplicas: 1 },
      },
      Mode: { Replicated: { Replicas: 2 } },
      EndpointSpec: { Mode: 'dnsrr' },
    });
    const tasks = await until('a task running on each node', 120_000, async () => {
      const running = await runningTasks('image-reach');
      return running.length === 2 ? running : undefined;
    });
    const ids = await nodeIds();
    expect(new Set(tasks.map((t) => t.NodeID))).toEqual(
      new Set([ids.get(`rsw${NET}-n1`), ids.get(`rsw${NET}-n2`)]),
    );
    const pulled = await node2.getImage(ref).inspect();
    expect(pulled.RepoDigests).toContain(ref);
    await swarm.manager.getService('image-reach').remove();
  }, 300_000);

  // What a task sees of itself, printed as one line, then it waits (the probe runs in place of the runner).
  const PROBE = `
    const fs = require('node:fs');
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const field = (name) => String((new RegExp('^' + name + ':(.*)$', 'm').exec(status) || [])[1]).trim();
    const mounts = {};
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n')) {
      const f = line.split(' ');
      if (['/', '/tmp', '/work', '/dev/shm'].includes(f[4])) mounts[f[4]] = f[5] + ' ' + (f[f.length - 1] || '');
    }
    let rootWrite = 'written';
    try { fs.writeFileSync('/probe', 'x'); } catch (e) { rootWrite = e.code; }
    const read = (p) => { try { return fs.readFileSync(p, 'utf8').trim(); } catch (e) { return e.code; } };
    console.log('PROBE ' + JSON.stringify({
      uid: process.getuid(), gid: process.getgid(), capEff: field('CapEff'), capBnd: field('CapBnd'),
      noNewPrivs: field('NoNewPrivs'), seccomp: field('Seccomp'), mounts, rootWrite,
      pidsMax: read('/sys/fs/cgroup/pids/pids.max'), memory: read('/sys/fs/cgroup/memory/memory.limit_in_bytes'),
      cpuQuota: read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us'), secret: read('/run/secrets/${SECRET_TARGET}'),
      interfaces: Object.keys(require('node:os').networkInterfaces()).sort(),
    }));
    setInterval(() => {}, 1 << 30);`;

  it('runs a plugin service hardened as container mode wherever Swarm can say it, on its own internal network', async () => {
    const session = newSession();
    const plugin = { id: 'com.example.Hardened/Echo', version: '1.2.3' };
    const ref = await publishImage(swarm.manager, local, swarm.registry);
    const network = await swarm.manager.createNetwork(networkSpec(plugin, session));
    const secret = (await swarm.manager.createSecret({
      Name: swarmName(session, plugin.id),
      Labels: swarmLabels(plugin, session, 'secret'),
      Data: Buffer.from('one-time-token').toString('base64'),
    })) as { id: string };
    const limits = { ...DEFAULT_LIMITS, memoryMb: 96, pids: 48, cpus: 0.5, tmpfsMb: 8 };
    const spec = serviceSpec({
      pluginId: plugin.id,
      version: plugin.version,
      limits,
      session,
      image: ref,
      runtime: 'runc',
      replicas: 2,
      network: network.id,
      dial: [],
      secret: { id: secret.id, name: swarmName(session, plugin.id) },
      command: ['/usr/local/bin/node', '-e', PROBE],
    });
    expect(spec.Name).toMatch(/^reed-[0-9a-f]{8}-com-example-hardened-echo-[0-9a-f]{8}$/);
    const service = (await swarm.manager.createService(spec)) as unknown as { id: string };
    await until('both probes running', 180_000, async () =>
      (await runningTasks(spec.Name)).length === 2 ? true : undefined,
    );
    const profiles = await until('both probes printed', 120_000, async () => {
      const raw = (await swarm.manager
        .getService(service.id)
        .logs({ stdout: true, stderr: true })) as unknown as Buffer;
      const lines = [
        ...Buffer.from(raw)
          .toString('utf8')
          .matchAll(/PROBE (\{.*\})/g),
      ].map((m) => m[1] as string);
      return lines.length >= 2 ? lines.map((l) => JSON.parse(l)) : undefined;
    });
    // biome-ignore lint/suspicious/noConsole: the task's mounts as the kernel shows them (docs/SCALE.md)
    console.log(`swarm task mounts: ${JSON.stringify(profiles[0].mounts)}`);
    for (const p of profiles) {
      expect(p).toMatchObject({
        uid: 65_534,
        gid: 65_534,
        capEff: '0000000000000000',
        capBnd: '0000000000000000',
        noNewPrivs: '1',
        seccomp: '2',
        rootWrite: 'EROFS',
        pidsMax: '48',
        memory: String((96 + 192) * 1024 * 1024),
        cpuQuota: '50000',
        secret: 'one-time-token',
      });
      expect(p.mounts['/']).toMatch(/^ro[ ,]/);
      // Docker mounts a service's tmpfs noexec (as container mode's /tmp; its /work is exec, see docs/SCALE.md).
      expect(p.mounts['/tmp']).toMatch(/^rw,nosuid,nodev,noexec[, ].*size=8192k/);
      expect(p.mounts['/dev/shm']).toMatch(/size=8192k/);
      // Only the plugin's own overlay network (and loopback): no gateway bridge, no route out.
      expect(p.interfaces).toEqual(['eth0', 'lo']);
    }
    const inspected = await swarm.manager.getNetwork(network.id).inspect();
    expect(inspected).toMatchObject({ Driver: 'overlay', Internal: true, Attachable: true, Scope: 'swarm' });
    // Stop: the service, its network and its secret go, by their labels.
    const removed = await removeSwarmResources(swarm.manager, [`reed.host.session=${session.id}`]);
    expect(removed).toEqual({ services: 1, networks: 1, secrets: 1 });
    // The swarm's objects are gone at once; a node's own copy of the network goes when its last task has stopped.
    const filters = { label: [`reed.host.session=${session.id}`] };
    await until('no service, network or secret of the plugin listed', 60_000, async () => {
      const left = [
        ...(await swarm.manager.listServices({ filters })),
        ...(await swarm.manager.listNetworks({ filters })),
        ...(await swarm.manager.listSecrets({ filters })),
      ];
      return left.length === 0 ? true : undefined;
    });
  }, 420_000);

  it("sweeps what a dead orchestrator left, by labels, and leaves a live one's alone", async () => {
    const ref = await publishImage(swarm.manager, local, swarm.registry);
    const live = newSession();
    // A host that is gone: a pid no process has now (a child that has exited).
    const { spawnSync } = await import('node:child_process');
    const deadPid = spawnSync('true').pid as number;
    const dead: HostSession = { id: 'deadbeef-0000-4000-8000-000000000000', pid: deadPid, start: 'gone' };
    for (const session of [live, dead]) {
      const plugin = { id: 'com.example.left', version: '1.0.0' };
      const network = await swarm.manager.createNetwork(networkSpec(plugin, session));
      await swarm.manager.createSecret({
        Name: swarmName(session, plugin.id),
        Labels: swarmLabels(plugin, session, 'secret'),
        Data: Buffer.from('x').toString('base64'),
      });
      await swarm.manager.createService(
        serviceSpec({
          pluginId: plugin.id,
          version: plugin.version,
          limits: DEFAULT_LIMITS,
          session,
          image: ref,
          runtime: 'runc',
          replicas: 1,
          network: network.id,
          dial: [],
          command: ['/usr/local/bin/node', '-e', 'setInterval(() => {}, 1 << 30)'],
        }),
      );
    }
    const swept = await sweepSwarm(swarm.manager);
    expect(swept).toEqual({ services: 1, networks: 1, secrets: 1 });
    const left = (await swarm.manager.listServices({ filters: { label: ['reed.managed=true'] } })).map(
      (s) => s.Spec?.Labels?.['reed.host.session'],
    );
    expect(left.filter((id) => id === live.id || id === dead.id)).toEqual([live.id]);
    expect(await removeSwarmResources(swarm.manager, [`reed.host.session=${live.id}`])).toEqual({
      services: 1,
      networks: 1,
      secrets: 1,
    });
  }, 300_000);

  it("lets a runner in a task on the other node dial the orchestrator over TLS on the plugin's internal network, and authenticate", async () => {
    // The orchestrator listens on the host (10.231.<net>.253, the host's end of the hub). The plugin's network is
    // internal, so a relay container on node 1 stands in for the orchestrator's own container: on the plugin's
    // network under the name the runner dials, it passes the bytes (TLS, end to end) on to the host's listener.
    const session = newSession();
    const plugin = { id: 'com.example.tls', version: '1.0.0' };
    const ref = await publishImage(swarm.manager, local, swarm.registry);
    const ca = await OrchestratorCa.create();
    const hostAddress = `10.231.${NET}.253`;
    const transport = new TlsRunnerTransport({
      credentials: await ca.issueServer(),
      caPem: ca.certPem,
      servername: ORCHESTRATOR_SERVERNAME,
      host: hostAddress,
      advertise: { host: 'reed-orchestrator', port: 7000 },
      handshakeTimeoutMs: 60_000,
      refused: () => {},
    });
    await transport.listen();
    try {
      const network = await swarm.manager.createNetwork(networkSpec(plugin, session));
      const relay = await swarm.manager.createContainer({
        name: `reed-relay-${session.id.slice(0, 8)}`,
        Image: ref,
        Entrypoint: ['/usr/local/bin/node'],
        Cmd: [
          '-e',
          `const net = require('node:net');
           net.createServer((c) => {
             const u = net.connect(Number(process.argv[2]), process.argv[1]);
             c.pipe(u); u.pipe(c);
             c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
           }).listen(7000);`,
          hostAddress,
          String(transport.port),
        ],
        Labels: swarmLabels(plugin, session, 'network'),
        HostConfig: { NetworkMode: 'bridge', ReadonlyRootfs: true, CapDrop: ['ALL'] },
      });
      await swarm.manager.getNetwork(network.id).connect({
        Container: relay.id,
        EndpointConfig: { Aliases: ['reed-orchestrator'] },
      });
      await relay.start();
      const secretValue = randomBytes(32).toString('hex');
      const secret = (await swarm.manager.createSecret({
        Name: swarmName(session, plugin.id),
        Labels: swarmLabels(plugin, session, 'secret'),
        Data: Buffer.from(secretValue).toString('base64'),
      })) as { id: string };
      const spec = serviceSpec({
        pluginId: plugin.id,
        version: plugin.version,
        limits: DEFAULT_LIMITS,
        session,
        image: ref,
        runtime: 'runc',
        replicas: 1,
        network: network.id,
        dial: dialArguments(transport.addressForRunner()),
        env: [
          `REED_TLS_CA=${ca.certPem}`,
          `REED_TLS_SERVERNAME=${ORCHESTRATOR_SERVERNAME}`,
          `REED_SECRET_FILE=/run/secrets/${SECRET_TARGET}`,
        ],
        secret: { id: secret.id, name: swarmName(session, plugin.id) },
      });
      // On node 2: the connection crosses the overlay between the nodes, then the relay, then the hub.
      spec.TaskTemplate.Placement.Constraints.push(`node.hostname==rsw${NET}-n2`);
      expect(spec.TaskTemplate.ContainerSpec.Args).toEqual([
        '--plugin-id',
        plugin.id,
        '--connect',
        'tls://reed-orchestrator:7000',
      ]);
      await swarm.manager.createService(spec);
      const socket = await transport.accept();
      const connection = new RunnerConnection(
        socket,
        {
          pluginId: plugin.id,
          secret: secretValue,
          maxFrameBytes: 1 << 20,
          handshakeTimeoutMs: 60_000,
          logger: pino({ level: 'silent' }),
        },
        { frame: () => {}, closed: () => {} },
      );
      // The runner verified the orchestrator's certificate (it says Hello only then) and presented the secret.
      await connection.handshake();
      expect((socket as TLSSocket).getProtocol()).toBe('TLSv1.3');
      connection.close(new ReedError('sandbox_crashed', 'test over'));
      await relay.remove({ force: true });
      await removeSwarmResources(swarm.manager, [`reed.host.session=${session.id}`]);
    } finally {
      await transport.close();
    }
  }, 300_000);

  it('moves the tasks of a node that is killed to the node left', async () => {
    const node1 = swarm.nodes[0]?.docker;
    if (node1 === undefined) throw new Error('two nodes expected');
    // Pushed already: no layer moves, the same digest comes back.
    const ref = await publishImage(node1, local, swarm.registry);
    // The scheduler spreads a service's tasks over the nodes: one on each.
    await swarm.manager.createService({
      Name: 'survivor',
      TaskTemplate: {
        ContainerSpec: {
          Image: ref,
          Command: ['/usr/local/bin/node'],
          Args: ['-e', 'setInterval(() => {}, 1 << 30)'],
        },
      },
      Mode: { Replicated: { Replicas: 2 } },
      EndpointSpec: { Mode: 'dnsrr' },
    });
    const ids = await nodeIds();
    const n1 = ids.get(`rsw${NET}-n1`);
    await until('a task running on each node', 120_000, async () => {
      const running = await runningTasks('survivor');
      return running.length === 2 && new Set(running.map((t) => t.NodeID)).size === 2 ? true : undefined;
    });
    await swarm.killNode(2);
    const down2 = await until('node 2 seen down by the manager', 120_000, async () => {
      const nodes = await swarm.manager.listNodes();
      return nodes.find((n) => n.Description?.Hostname === `rsw${NET}-n2`)?.Status?.State === 'down'
        ? true
        : undefined;
    });
    expect(down2).toBe(true);
    const tasks = await until('both tasks running on node 1', 120_000, async () => {
      const running = await runningTasks('survivor');
      return running.length === 2 && running.every((t) => t.NodeID === n1) ? running : undefined;
    });
    expect(tasks).toHaveLength(2);
  }, 300_000);

  it('goes away leaving nothing: no engine, namespace, veth, mount, cgroup, firewall rule or file', async () => {
    const ms = await swarm.down();
    down = true;
    // biome-ignore lint/suspicious/noConsole: the swarm's set-up and teardown times (docs/SCALE.md)
    console.log(`swarm ${NET} down in ${Math.round(ms)} ms`);
    expect(await swarmLeftovers(NET)).toEqual([]);
  }, 120_000);
});
