import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { TRACE_DENIED } from '../helpers/processes.js';

const docker = new Docker();
const containerOf = (host: PluginHost, id: string) =>
  (((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner as ContainerRunner)
    .container as Docker.Container;

async function containerHost(dirs: string[], plugins: string[], toml = '') {
  return startHost(dirs, { mode: 'container', plugins, reedToml: `[signatures]\nrequire = "none"\n${toml}` });
}

describe('container mode (runc)', () => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await containerHost([join(REPO, 'examples/plugins')], ['example.hello']));
  }, 120_000);
  afterAll(() => host.close());

  it('runs the plugin in a container that docker inspect shows hardened', async () => {
    expect(text((await host.call('example.hello', 'greet', 'box')).output)).toBe('Hello, box!');
    const c = (await containerOf(host, 'example.hello').inspect()) as unknown as {
      Config: { User: string; WorkingDir: string; Labels: Record<string, string> };
      HostConfig: Record<string, unknown> & {
        Tmpfs: Record<string, string>;
        Ulimits: { Name: string; Soft: number; Hard: number }[];
        LogConfig: { Type: string; Config: Record<string, string> };
      };
      Mounts: { Type: string; Source: string; Destination: string }[];
    };
    const h = c.HostConfig;
    expect(h.CapDrop).toEqual(['ALL']);
    expect(h.SecurityOpt).toContain('no-new-privileges:true');
    expect(h.Privileged).toBe(false);
    expect(h.ReadonlyRootfs).toBe(true);
    expect(h.Tmpfs['/tmp']).toMatch(/noexec/);
    expect(h.Tmpfs['/tmp']).toMatch(/nosuid/);
    expect(h.Tmpfs['/tmp']).toMatch(/size=16m/);
    expect(h.Memory).toBeGreaterThan(0);
    expect(h.MemorySwap).toBe(h.Memory);
    expect(h.NanoCpus).toBe(1e9);
    expect(h.PidsLimit).toBe(64);
    expect(h.Ulimits.map((u) => u.Name).sort()).toEqual(['core', 'fsize', 'nofile']);
    expect(h.Ulimits.find((u) => u.Name === 'core')).toMatchObject({ Soft: 0, Hard: 0 });
    expect(h.NetworkMode).toBe('none');
    expect(h.Init).toBe(true);
    expect(h.IpcMode).toBe('private');
    expect(h.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } });
    expect(h.Runtime).toBe('runc');
    expect(c.Config.User).toBe('65534:65534');
    expect(c.Config.WorkingDir).toBe('/work');
    expect(c.Config.Labels).toMatchObject({
      'reed.managed': 'true',
      'reed.plugin.id': 'example.hello',
      'reed.plugin.version': '0.1.0',
      'reed.host.session': host.session.id,
    });
    expect(c.Config.Labels['reed.image.hash']).toMatch(/^[0-9a-f]{32}$/);
    const binds = c.Mounts.filter((m) => m.Type === 'bind');
    expect(binds).toHaveLength(1);
    expect(binds[0]?.Destination).toBe('/run/reed');
    expect(c.Mounts.some((m) => m.Source.includes('docker.sock'))).toBe(false);
  });

  it('removes the container when the plugin stops', async () => {
    const { host: h } = await containerHost([join(REPO, 'examples/plugins')], ['example.hello']);
    const id = containerOf(h, 'example.hello').id;
    await h.close();
    await expect(docker.getContainer(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe.each(['runc', 'runsc'])('hostile plugins in containers (%s)', (runtime) => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await containerHost(
      [join(REPO, 'test/fixtures/native-container'), join(REPO, 'test/fixtures/native-process')],
      ['container.escape', 'container.cpu-spin', 'proc.membomb', 'proc.segfault', 'proc.trace'],
      `[sandbox]\nruntime = "${runtime}"\n`,
    ));
  }, 180_000);
  afterAll(() => host.close());

  it('denies every way out: read-only root, /tmp size, network, setuid, mount, ptrace, unshare, Docker socket, host files', async () => {
    const report = JSON.parse(text((await host.call('container.escape', 'attack')).output)) as Record<
      string,
      number
    >;
    expect(report.uid).toBe(65534);
    for (const [attempt, errno] of Object.entries(report)) {
      if (attempt === 'uid') continue;
      expect(errno, `${attempt} must fail`).not.toBe(0);
    }
    expect([28, 27]).toContain(report.fill_tmp); // ENOSPC or EFBIG: the size holds
    expect(report.docker_socket).toBe(2); // ENOENT
  });

  it('cannot trace or read another process: the runner\u2019s seccomp filter stacks on the default profile', async () => {
    // Docker's default profile allows ptrace (kernel >= 4.8), and docker-init runs as the container's user.
    const report = JSON.parse(text((await host.call('proc.trace', 'attack')).output)) as Record<
      string,
      number
    >;
    expect(report).toEqual(TRACE_DENIED);
  });

  it('holds the pids limit against a fork bomb, and the host stays responsive', async () => {
    // Another plugin's call made beside the bomb is answered. (It counted a 10 ms timer's ticks before: a bomb
    // refused within 10 ms left none, and the test failed for the host's speed.)
    const beside = host.call('proc.segfault', 'ok');
    try {
      const result = JSON.parse(text((await host.call('container.escape', 'forkbomb')).output)) as {
        forked: number;
        errno: number;
      };
      // runc: the kernel refuses the 64th task.
      expect(result.forked).toBeLessThan(64);
      expect(result.errno).toBe(11); // EAGAIN
    } catch (error) {
      // gVisor: the sandbox itself gives out under the limit and is stopped; contained all the same. Which limit
      // it meets first depends on timing: the tasks (sandbox_crashed), or the memory the sentry spends on them
      // (memory_limit: its cgroup's OOM killer, seen on a loaded machine).
      expect(runtime).toBe('runsc');
      expect(['sandbox_crashed', 'memory_limit']).toContain((error as { code?: string }).code);
    }
    expect(text((await beside).output)).toBe('ok');
  });

  it('holds a CPU spin on two threads to its quota (cpus = 0.5)', async () => {
    // The engine's own accounting of the container's cgroup: what the quota limits, whatever the runtime (under
    // gVisor the plugin's own CPU clock is the sentry's estimate, not the host's).
    const container = containerOf(host, 'container.cpu-spin');
    const cpuNs = async () =>
      ((await container.stats({ stream: false })) as { cpu_stats: { cpu_usage: { total_usage: number } } })
        .cpu_stats.cpu_usage.total_usage;
    const before = await cpuNs();
    const t = performance.now();
    const r = JSON.parse(text((await host.call('container.cpu-spin', 'attack')).output)) as {
      wall_ms: number;
    };
    const wallMs = performance.now() - t;
    const usedMs = ((await cpuNs()) - before) / 1e6;
    expect(r.wall_ms).toBeGreaterThanOrEqual(1000);
    // Without the quota two spinning threads get up to two CPUs here (at least one even on a busy machine);
    // with it, half of one, plus room for the scheduler's accounting periods and the stats calls.
    expect(usedMs / wallMs).toBeLessThan(0.5 * 1.3);
  });

  it('reports a memory bomb as the memory limit', async () => {
    await expect(host.call('proc.membomb', 'attack')).rejects.toMatchObject({ code: 'memory_limit' });
  });

  it('reports a crash as sandbox_crashed and restarts the container', async () => {
    await expect(host.call('proc.segfault', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
    // This call waits for the new container; on a busy 2-core machine that can take longer than the plugin's
    // 5 s call deadline, which covers the wait.
    expect(text((await host.call('proc.segfault', 'ok', '', { timeoutMs: 30_000 })).output)).toBe('ok');
  });
});

describe('image builds', () => {
  it('reject with the error from the build stream when a build fails', async () => {
    const { ensureRunnerImage } = await import('../../src/backends/container/images.js');
    const pino = (await import('pino')).default;
    await expect(
      ensureRunnerImage({ docker, logger: pino({ level: 'silent' }), baseImage: 'reed-no-such-image:never' }),
    ).rejects.toMatchObject({
      code: 'image_build_failed',
      // The engine's own words from the build stream (here: no registry can be reached for the base image).
      message: expect.stringMatching(/^building image reed-base:[0-9a-f]+ failed: \S/),
    });
  });

  it('show each build step as progress in the log, at info level', async () => {
    const { ensurePluginImage, ensureRunnerImage } = await import('../../src/backends/container/images.js');
    const pino = (await import('pino')).default;
    const { writeFileSync } = await import('node:fs');
    const { tempDir } = await import('../helpers/plugin-tree.js');
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const plugin = tempDir();
    writeFileSync(join(plugin, 'unique'), `${Date.now()} ${Math.random()}`); // a new hash: a real build
    const tag = await ensurePluginImage(
      { docker, logger },
      await ensureRunnerImage({ docker, logger }),
      plugin,
      'test.progress',
    );
    try {
      const steps = lines.filter((l) => l.msg.startsWith('Step '));
      expect(steps.length).toBeGreaterThanOrEqual(2);
      expect(steps.every((l) => l.level === 30)).toBe(true);
    } finally {
      await docker.getImage(tag).remove({ force: true });
    }
  });

  it('are built and named by `reed-plugins images`', async () => {
    const { runCli } = await import('../helpers/cli.js');
    const r = runCli(['images', '--json'], { env: { REED_LOG_LEVEL: 'silent' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const tags = JSON.parse(r.stdout) as { base: string; runner: string };
    expect(tags.base).toMatch(/^reed-base:[0-9a-f]{32}$/);
    expect(tags.runner).toMatch(/^reed-runner:[0-9a-f]{32}$/);
    for (const tag of [tags.base, tags.runner])
      expect((await docker.getImage(tag).inspect()).Config.Labels['reed.managed']).toBe('true');
  });

  it('build nothing the second time for the same content', async () => {
    const { ensureRunnerImage } = await import('../../src/backends/container/images.js');
    const pino = (await import('pino')).default;
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => logs.push(l) });
    const first = await ensureRunnerImage({ docker, logger });
    logs.length = 0;
    expect(await ensureRunnerImage({ docker, logger })).toBe(first);
    expect(logs.filter((l) => l.includes('building image'))).toEqual([]);
  });
});
