import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { hostileRunnerImage, NODE_IN_IMAGE, RUNNERS_IN_IMAGE } from '../helpers/hostile-image.js';

/**
 * Class 3 of issue 10: a runner's stdout and stderr are hostile input. A runner that writes hundreds of MiB
 * without a newline must not grow the host's heap (the host used to buffer the unfinished line until it threw),
 * and the host must keep serving that plugin and the others.
 */
const RUNNERS = join(REPO, 'test/fixtures/runners');
const PLUGINS = [join(REPO, 'examples/plugins')];
const MiB = 1024 * 1024;
const docker = new Docker();
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

/** Runs `work` while sampling the heap; resolves with its result and the largest heap growth seen. */
async function heapDuring<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  globalThis.gc?.();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }, 10);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().heapUsed);
    return { result, growth: peak - base };
  } finally {
    clearInterval(timer);
  }
}

/** Floods `stream` with `mib` MiB from example.hello's runner while example.wordcount is called; checks both after. */
async function floodAndServe(host: PluginHost, logs: LogLine[], stream: 1 | 2, mib: number): Promise<void> {
  const { result, growth } = await heapDuring(() =>
    Promise.all([
      host.call('example.hello', 'attack', Buffer.from(`${stream} ${mib}`)),
      host.call('example.wordcount', 'ok'),
    ]),
  );
  expect(text(result[0].output)).toBe('flooded');
  expect(text(result[1].output)).toBe('ok');
  // What the runner wrote went by; the host kept at most a line's cap of it (64 MiB: room for GC's own lag).
  expect(growth).toBeLessThan(64 * MiB);
  expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
  expect(text((await host.call('example.wordcount', 'ok')).output)).toBe('ok');
  const warned = logs.filter((l) => l.code === 'output_truncated');
  expect(warned.length).toBeGreaterThan(0);
  expect(warned.every((l) => l.pluginId === 'example.hello')).toBe(true);
  // The line the host passed on is cut at the cap.
  const lines = logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('AAAA'));
  expect(lines.every((l) => Buffer.byteLength(l.msg) < 16 * 1024)).toBe(true);
}

describe('process mode: a runner that writes hundreds of MiB without a newline', () => {
  it.each([1, 2] as const)(
    'on stream %i (1 stdout, 2 stderr): the host heap stays bounded and both plugins keep answering',
    async (stream) => {
      const started = await startHost(PLUGINS, {
        mode: 'process',
        plugins: ['example.hello', 'example.wordcount'],
        reedToml: '[signatures]\nrequire = "none"\n',
        supervision: { startTimeoutMs: 10_000 },
        runnerCommand: [process.execPath, join(RUNNERS, 'stdout-flood.mjs')],
      });
      hosts.push(started.host);
      await floodAndServe(started.host, started.logs, stream, 400);
    },
  );
});

describe.each(['runc', 'runsc'])(
  'container mode (%s): a runner that writes hundreds of MiB without a newline',
  (runtime) => {
    let image: string;
    beforeAll(async () => {
      image = await hostileRunnerImage(docker, 'reed-test-runner-output:latest');
    }, 300_000);

    it('on stdout and on stderr: the host heap stays bounded and both plugins keep answering', async () => {
      const started = await startHost(PLUGINS, {
        mode: 'container',
        plugins: ['example.hello', 'example.wordcount'],
        // gVisor moves output slower than a 5 s deadline allows for 200 MiB.
      reedToml: `[signatures]\nrequire = "none"\n[sandbox]\nruntime = "${runtime}"\n[limits]\ncall_timeout_ms = 120000\n`,
        supervision: { startTimeoutMs: 30_000 },
        runnerImage: image,
        runnerCommand: [NODE_IN_IMAGE, `${RUNNERS_IN_IMAGE}/stdout-flood.mjs`],
        docker,
      });
      hosts.push(started.host);
      await floodAndServe(started.host, started.logs, 1, 200);
      await floodAndServe(started.host, started.logs, 2, 200);
    }, 300_000);
  },
);
