import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRunnerImages } from '../../src/backends/container/images.js';
import { subscribeEvent } from '../../src/events/events.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { CALLS, CONFORMANCE_TOML } from '../helpers/conformance-cases.js';
import { text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { startSwarm, swarmLeftovers, type TestSwarm, until } from '../helpers/swarm.js';

// The swarm backend (container mode with `swarm`: src/backends/swarm/) on a swarm of two engines on this machine
// (scripts/swarm-up.sh). The host runs here, outside Docker: a relay container per runner on the manager stands in
// for the orchestrator on the runner's internal network (SwarmBackendOptions.relay). Swarm 42: no other file uses it.
const NET = 42;
/** The host's end of the hub (the relay dials it; the orchestrator's TLS listeners listen there). */
const HOST_ADDRESS = `10.231.${NET}.253`;
/** Native plugins do not run on a swarm (a task's /work is noexec: docs/SCALE.md); they are refused by name. */
const NATIVE = 'example.native-c';

interface Task {
  ID: string;
  NodeID: string;
  Status: { State: string };
  DesiredState: string;
  ServiceID: string;
}

async function startSwarmHost(
  swarm: TestSwarm,
  dirs: string[],
  extra: { plugins?: string[] } = {},
): Promise<PluginHost> {
  const dir = tempDir('reed-swarm-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[sandbox]\nruntime = "runc"\n${CONFORMANCE_TOML}`,
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: dirs, defaultSearchPaths: false },
  });
  return PluginHost.start({
    config,
    // Warnings and errors to stderr: what the backend could not do says itself in a failed run.
    logger: pino({ level: 'warn' }, process.stderr),
    services: { storage: new MemoryStorage() },
    forceMode: 'container',
    ...(extra.plugins === undefined ? {} : { plugins: extra.plugins }),
    swarm: { docker: swarm.manager, registry: swarm.registry, relay: HOST_ADDRESS },
  });
}

describe('the swarm backend on a two-engine swarm', () => {
  let swarm: TestSwarm;
  let down = false;

  beforeAll(async () => {
    swarm = await startSwarm({ net: NET, nodes: 2 });
  }, 300_000);

  afterAll(async () => {
    if (swarm !== undefined && !down) await swarm.down();
  }, 300_000);

  async function managed(): Promise<string[]> {
    const filters = { label: ['reed.managed=true'] };
    return [
      ...(await swarm.manager.listServices({ filters })).map((s) => `service ${s.Spec?.Name}`),
      ...(await swarm.manager.listNetworks({ filters })).map((n) => `network ${n.Name}`),
      ...(await swarm.manager.listSecrets({ filters })).map((s) => `secret ${s.Spec?.Name}`),
      ...(await swarm.manager.listContainers({ all: true, filters })).map((c) => `container ${c.Names[0]}`),
    ];
  }

  /**
   * Nothing of a closed host on the swarm: its services, networks and secrets are removed by the close; a node's
   * own copy of a network, and a task's container, go once the task has stopped there (polled, 120 s at most).
   */
  async function expectNothingLeft(): Promise<void> {
    const deadline = Date.now() + 120_000;
    let left = await managed();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      left = await managed();
    }
    expect(left).toEqual([]);
  }

  describe('conformance', () => {
    let host: PluginHost;
    const started = performance.now();
    beforeAll(async () => {
      // The suite's plugins only (a runner's start on a swarm takes seconds: every other hostile plugin would add
      // minutes and no case).
      host = await startSwarmHost(
        swarm,
        [join(REPO, 'examples/plugins'), join(REPO, 'test/fixtures/hostile')],
        {
          plugins: [...new Set(CALLS.map(([plugin]) => plugin))],
        },
      );
      // biome-ignore lint/suspicious/noConsole: the load's time on the swarm (docs/SCALE.md)
      console.log(`swarm conformance host loaded in ${Math.round(performance.now() - started)} ms`);
    }, 600_000);

    afterAll(async () => {
      await host?.close();
    }, 300_000);

    it.each(CALLS.filter(([plugin]) => plugin !== NATIVE))(
      '%s.%s(%j)',
      async (plugin, fn, input, expected) => {
        const call = host.call(plugin, fn, input);
        if ('output' in expected) {
          const { output } = await call;
          if (expected.output === 'EBADF') expect(Buffer.from(output).readUInt32LE(0)).toBe(8);
          else expect(text(output)).toContain(expected.output);
        } else {
          await expect(call).rejects.toMatchObject({
            code: expected.code,
            ...(expected.causeCode ? { details: { causeCode: expected.causeCode } } : {}),
          });
        }
      },
    );

    it('refuses a native plugin by name, saying why', () => {
      const native = host.status().find((s) => s.id === NATIVE);
      expect(native?.state).toBe('failed');
      expect(native?.error?.message).toMatch(/example\.native-c.*swarm backend cannot run native plugins/);
    });

    it('runs every loadable plugin as a swarm service of its own, one task each', async () => {
      const ready = host.status().filter((s) => s.state === 'ready');
      // Every plugin of the suite that loads in the other modes (not native, not refused by a plugin_failed case).
      const loadable = new Set(CALLS.filter(([p]) => p !== NATIVE).map(([p]) => p));
      for (const [p, , , expected] of CALLS)
        if ('code' in expected && expected.code === 'plugin_failed') loadable.delete(p);
      expect(ready.map((s) => s.id).sort()).toEqual([...loadable].sort());
      for (const s of ready) expect(s.mode).toBe('container');
      const services = await swarm.manager.listServices({ filters: { label: ['reed.managed=true'] } });
      const ids = new Set(services.map((s) => s.Spec?.Labels?.['reed.plugin.id']));
      for (const s of ready) expect(ids.has(s.id)).toBe(true);
      // The main engine runs none of them: no container of this host there.
    });

    it('leaves nothing on the swarm when the host closes', async () => {
      await host.close();
      await expectNothingLeft();
    }, 300_000);
  });

  describe('an orchestrator in a container of the manager (the production path: no relay)', () => {
    it("joins each runner's network to be reached, serves calls, and leaves nothing when it closes", async () => {
      // The orchestrator (test/fixtures/swarm-orchestrator/main.mjs) in a container of the manager's engine, from
      // the base image (this machine's Node), this checkout bound read-only at its own path, the manager's socket
      // as its Docker socket; its reed.toml and data in a directory of its own.
      const { base } = await ensureRunnerImages({ docker: swarm.manager, logger: pino({ level: 'silent' }) });
      const dir = tempDir('reed-swarm-own-');
      writeFileSync(
        join(dir, 'reed.toml'),
        `cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[sandbox]\nruntime = "runc"\n${CONFORMANCE_TOML}`,
      );
      const socket = (swarm.nodes[0]?.socket ?? '').replace(/^unix:\/\//, '');
      const orchestrator = await swarm.manager.createContainer({
        Image: base,
        User: '0:0',
        Cmd: [
          join(REPO, 'test/fixtures/swarm-orchestrator/main.mjs'),
          REPO,
          dir,
          swarm.registry,
          join(REPO, 'examples/plugins'),
        ],
        HostConfig: {
          Binds: [`${REPO}:${REPO}:ro`, `${dir}:${dir}`, `${socket}:/var/run/docker.sock`],
          NetworkMode: 'bridge',
        },
      });
      let out = '';
      try {
        await orchestrator.start();
        const exit = (await orchestrator.wait()) as { StatusCode: number };
        const logs = (await orchestrator.logs({ stdout: true, stderr: true, follow: false })) as Buffer;
        out = demux(logs);
        expect(exit.StatusCode, out).toBe(0);
      } finally {
        await orchestrator.remove({ force: true });
      }
      const steps = out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { step: string } & Record<string, unknown>);
      expect(
        steps.map((s) => s.step),
        out,
      ).toEqual(['started', 'loaded', 'call', 'networks', 'closed']);
      // It knew its own container (the way onto a runner's network) and was on each of its runners' networks.
      expect(steps[0]?.container).toBe(orchestrator.id);
      expect(steps[2]?.output).toBe('Hello, swarm!');
      expect(steps[3]?.joined).toBe(true);
      await expectNothingLeft();
    }, 600_000);
  });

  describe('a node lost', () => {
    let host: PluginHost;
    let plugins: string;

    beforeAll(async () => {
      // example.hello with two replicas: one runner on each node (the scheduler spreads tasks over the nodes).
      plugins = tempDir('reed-swarm-plugins-');
      cpSync(join(REPO, 'examples/plugins/hello'), join(plugins, 'hello'), { recursive: true });
      writeFileSync(
        join(plugins, 'hello/plugin.toml'),
        '[metadata]\nid = "example.hello"\nname = "Hello"\nversion = "0.1.0"\napi_version = "1.0.0"\n' +
          '[permissions]\nlog = true\n[configuration]\ngreeting = "Hello"\n[sandbox]\nreplicas = 2\n',
      );
      host = await startSwarmHost(swarm, [plugins]);
    }, 600_000);

    afterAll(async () => {
      await host?.close();
      if (plugins !== undefined) rmSync(plugins, { recursive: true, force: true });
    }, 300_000);

    async function runningTasks(): Promise<Task[]> {
      const services = await swarm.manager.listServices({
        filters: { label: ['reed.plugin.id=example.hello'] },
      });
      const tasks = (await swarm.manager.listTasks({
        filters: { service: services.map((s) => s.ID as string) },
      })) as Task[];
      return tasks.filter((t) => t.Status.State === 'running' && t.DesiredState === 'running');
    }

    async function nodeId(hostname: string): Promise<string> {
      const nodes = await swarm.manager.listNodes();
      return nodes.find((n) => n.Description?.Hostname === hostname)?.ID ?? '';
    }

    it('answers every call issued after the loss of node 2, from node 1', async () => {
      const n1 = await nodeId(`rsw${NET}-n1`);
      const n2 = await nodeId(`rsw${NET}-n2`);
      const status = host.status().find((s) => s.id === 'example.hello');
      expect(status, JSON.stringify(status?.error)).toMatchObject({ state: 'ready' });
      const before = await runningTasks();
      expect(before).toHaveLength(2);
      expect(new Set(before.map((t) => t.NodeID))).toEqual(new Set([n1, n2]));
      for (let i = 0; i < 4; i++)
        expect(text((await host.call('example.hello', 'greet', `r${i}`)).output)).toBe(`Hello, r${i}!`);

      const lost = performance.now();
      await swarm.killNode(2);
      // Calls one after the other from the moment the node is gone. A call sent to the lost replica before the
      // host saw the loss is in flight on it: it fails with sandbox_crashed, and only it. From the moment the host
      // saw the loss (the set says one replica ready), every call is answered by the replica on node 1.
      const outcomes: { at: number; seen: boolean; ok: boolean; code?: string }[] = [];
      let seenAt: number | undefined;
      let restartedAt: number | undefined;
      const unsubscribe = [
        subscribeEvent('reed:sandbox:crashed', (e) => {
          if (e.pluginId === 'example.hello') seenAt ??= performance.now();
        }),
        subscribeEvent('reed:sandbox:restarted', (e) => {
          if (e.pluginId === 'example.hello') restartedAt ??= performance.now();
        }),
      ];
      const deadline = Date.now() + 240_000;
      while (Date.now() < deadline) {
        const wasSeen = seenAt !== undefined;
        const at = performance.now() - lost;
        try {
          const { output } = await host.call('example.hello', 'greet', 'after', { timeoutMs: 120_000 });
          expect(text(output)).toBe('Hello, after!');
          outcomes.push({ at, seen: wasSeen, ok: true });
        } catch (error) {
          outcomes.push({ at, seen: wasSeen, ok: false, code: (error as { code?: string }).code ?? '' });
        }
        // Paced: a few hundred calls, not tens of thousands, while the replica comes back.
        await new Promise((resolve) => setTimeout(resolve, 50));
        // A few more calls over both replicas once the lost one is back.
        if (
          restartedAt !== undefined &&
          outcomes.filter((o) => o.at > (restartedAt as number) - lost).length >= 6
        )
          break;
      }
      for (const u of unsubscribe) u();
      // biome-ignore lint/suspicious/noConsole: the loss's figures (docs/SCALE.md)
      console.log(
        `node 2 lost: seen by the host after ${Math.round((seenAt ?? Number.NaN) - lost)} ms, replica back after ${Math.round((restartedAt ?? Number.NaN) - lost)} ms; ${outcomes.length} calls, failed: ${JSON.stringify(outcomes.filter((o) => !o.ok))}`,
      );
      expect(seenAt).toBeDefined();
      expect(restartedAt).toBeDefined();
      // Every call issued once the loss was seen succeeded; before that, only the lost replica's call failed.
      const afterSeen = outcomes.filter((o) => o.seen);
      expect(afterSeen.length).toBeGreaterThan(6);
      expect(afterSeen.filter((o) => !o.ok)).toEqual([]);
      const failed = outcomes.filter((o) => !o.ok);
      expect(failed.length).toBeLessThanOrEqual(1);
      for (const f of failed) expect(f.code).toBe('sandbox_crashed');
      // Both replicas now run on node 1.
      const after = await until('two tasks running on node 1', 120_000, async () => {
        const tasks = await runningTasks();
        return tasks.length === 2 && tasks.every((t) => t.NodeID === n1) ? tasks : undefined;
      });
      expect(after).toHaveLength(2);
      // Stop: nothing of the host left on the swarm, the lost runner's service, network and secret included.
      await host.close();
      await expectNothingLeft();
    }, 600_000);
  });

  it('goes away leaving nothing', async () => {
    const ms = await swarm.down();
    down = true;
    // biome-ignore lint/suspicious/noConsole: the swarm's teardown time (docs/SCALE.md)
    console.log(`swarm ${NET} down in ${Math.round(ms)} ms`);
    expect(await swarmLeftovers(NET)).toEqual([]);
  }, 300_000);
});

/** A container's log stream without Docker's 8-byte frame headers (no TTY): stdout and stderr in order. */
function demux(logs: Buffer): string {
  const parts: Buffer[] = [];
  for (let at = 0; at + 8 <= logs.length; ) {
    const size = logs.readUInt32BE(at + 4);
    parts.push(logs.subarray(at + 8, at + 8 + size));
    at += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}
