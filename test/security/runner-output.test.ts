import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import Docker from 'dockerode';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DockerDemux, OUTPUT_BURST_BYTES, OutputPump } from '../../src/backends/shared/output-pump.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { encodeFrame, FrameDecoder, FrameType, ProtocolError } from '../../src/protocol/frames.js';
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

/** The host's own memory: its heap, plus Buffers outside it (socket buffers hold those). */
const used = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};

/**
 * A full garbage collection, so that samples count what the host holds, not garbage the collector has not reached
 * yet (newer V8s, Node 24's, let the young generation grow far larger before they scavenge).
 */
v8.setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/**
 * What the host holds once the collector is done: a full collection, a turn of the event loop, another. Newer V8s
 * (Node 24's) free dead ArrayBuffers' memory on a background thread after a collection, and `external` counts it
 * until that is done: one collection alone can see tens of MiB of Buffers already dead.
 */
async function settled(): Promise<number> {
  collect();
  await new Promise((resolve) => setImmediate(resolve));
  collect();
  return used();
}

/** Runs `work` while sampling memory (after a collection); resolves with its result and the largest growth seen. */
async function heapDuring<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  collect();
  const base = used();
  let peak = base;
  // Every 250 ms: a full collection of the test worker's heap is itself work on the host's thread, and sampled
  // often on a loaded machine it would starve the reading it measures. A host that buffered the flood would hold
  // hundreds of MiB for seconds, which no sample misses.
  let sampling = false;
  const timer = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void settled().then((n) => {
      peak = Math.max(peak, n);
      sampling = false;
    });
  }, 250);
  try {
    const result = await work();
    peak = Math.max(peak, await settled());
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
        // The deadline is not what this tests: on a loaded machine 256 MiB can take longer than the default 5 s.
        reedToml: '[signatures]\nrequire = "none"\n[limits]\ncall_timeout_ms = 120000\n',
        supervision: { startTimeoutMs: 10_000 },
        runnerCommand: [process.execPath, join(RUNNERS, 'stdout-flood.mjs')],
      });
      hosts.push(started.host);
      await floodAndServe(started.host, started.logs, stream, 256);
    },
    300_000,
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
        // gVisor moves output slower than a 5 s deadline allows for 128 MiB, and so does runc on a loaded machine.
        reedToml: `[signatures]\nrequire = "none"\n[sandbox]\nruntime = "${runtime}"\n[limits]\ncall_timeout_ms = 240000\n`,
        supervision: { startTimeoutMs: 30_000 },
        runnerImage: image,
        runnerCommand: [NODE_IN_IMAGE, `${RUNNERS_IN_IMAGE}/stdout-flood.mjs`],
        docker,
      });
      hosts.push(started.host);
      await floodAndServe(started.host, started.logs, 1, 128);
      await floodAndServe(started.host, started.logs, 2, 128);
    }, 600_000);
  },
);

describe('process mode: a runner that asks the host for replies it never reads', () => {
  it('the host stops reading from it instead of buffering 200 MiB of replies; the call times out and the runner is replaced', async () => {
    const started = await startHost([join(REPO, 'examples/plugins')], {
      mode: 'process',
      plugins: ['example.notes-c'],
      reedToml: '[signatures]\nrequire = "none"\n[limits]\ncall_timeout_ms = 3000\n',
      supervision: { startTimeoutMs: 10_000, restartBaseMs: 20 },
      runnerCommand: [process.execPath, join(RUNNERS, 'unread-replies.mjs')],
    });
    hosts.push(started.host);
    const { result, growth } = await heapDuring(() =>
      started.host.call('example.notes-c', 'attack').then(
        () => 'answered',
        (error: { code?: string }) => error.code,
      ),
    );
    expect(result).toBe('call_timeout');
    expect(growth).toBeLessThan(64 * MiB);
    expect(text((await started.host.call('example.notes-c', 'ok')).output)).toBe('ok');
  });
});

describe('the frame decoder (host and runner side)', () => {
  it('a frame sent one byte per chunk costs one frame of memory, not one object per chunk', () => {
    const decoder = new FrameDecoder(8 * MiB);
    const frame = encodeFrame(FrameType.Result, 1, { fuelConsumed: 0 }, Buffer.alloc(2 * MiB, 7));
    collect();
    const base = used();
    let peak = base;
    const frames = [];
    for (let i = 0; i < frame.length; i++) {
      frames.push(...decoder.push(frame.subarray(i, i + 1)));
      if (i % 65_536 === 0) peak = Math.max(peak, used());
    }
    expect(frames).toHaveLength(1);
    expect(Buffer.from(frames[0]?.body ?? []).equals(Buffer.alloc(2 * MiB, 7))).toBe(true);
    expect(peak - base).toBeLessThan(64 * MiB);
  });

  it('splits the same frames whatever the chunking, and refuses a length above its limit before it arrives', () => {
    const stream = Buffer.concat([
      encodeFrame(FrameType.Log, 0, { level: 1, message: 'a' }),
      encodeFrame(FrameType.Result, 7, { fuelConsumed: 3 }, Buffer.alloc(70_000, 1)),
      encodeFrame(FrameType.Pong, 9),
    ]);
    for (const size of [1, 3, 4, 5, 13, 4096, 65_536, stream.length]) {
      const decoder = new FrameDecoder(1 * MiB);
      const frames = [];
      for (let at = 0; at < stream.length; at += size)
        frames.push(...decoder.push(stream.subarray(at, at + size)));
      expect(frames.map((f) => [f.type, f.id, f.body.length])).toEqual([
        [FrameType.Log, 0, 0],
        [FrameType.Result, 7, 70_000],
        [FrameType.Pong, 9, 0],
      ]);
    }
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(2 * MiB);
    expect(() => new FrameDecoder(1 * MiB).push(huge)).toThrow(ProtocolError);
  });
});

describe('the output pump itself', () => {
  const logger = () => {
    const warnings: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => warnings.push(JSON.parse(l)) });
    return { log, warnings };
  };

  it('cuts a line with no newline (\\r floods, binary) at the cap and drops the rest unread, however much comes', () => {
    const { log, warnings } = logger();
    const lines: string[] = [];
    const pump = new OutputPump({ pluginId: 'p', logger: log, onLine: (_s, l) => lines.push(l) });
    const cr = Buffer.alloc(64 * 1024, 13);
    const binary = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7 + 1) % 256 || 1)).map(
      (b) => (b === 10 ? 11 : b),
    );
    for (let i = 0; i < 800; i++) pump.push(1, i % 2 === 0 ? cr : Buffer.from(binary)); // 50 MiB, no newline
    pump.push(1, Buffer.from('\nnext line\r\n'));
    pump.end(1);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/\[line cut at 8192 bytes\]$/);
    expect(Buffer.byteLength(lines[0] ?? '')).toBeLessThan(3 * 8192 + 64);
    expect(lines[1]).toBe('next line');
    expect(warnings.filter((w) => w.code === 'output_truncated')).toHaveLength(1);
  });

  it('passes lines within its byte budget and drops the rest, with one warning', () => {
    const { log, warnings } = logger();
    let passed = 0;
    const pump = new OutputPump({ pluginId: 'p', logger: log, onLine: () => passed++ });
    const line = Buffer.from(`${'x'.repeat(1023)}\n`);
    const chunk = Buffer.concat(Array.from({ length: 64 }, () => line));
    for (let i = 0; i < 1024; i++) pump.push(2, chunk); // 64 MiB of 1 KiB lines, faster than any refill
    expect(passed).toBeGreaterThan(0);
    expect(passed * 1024).toBeLessThanOrEqual(OUTPUT_BURST_BYTES + 8 * MiB);
    expect(warnings.filter((w) => w.code === 'output_truncated')).toHaveLength(1);
  });

  it('splits a Docker multiplexed stream whose headers and payloads are cut anywhere', () => {
    const lines: [number, string][] = [];
    const demux = new DockerDemux(
      new OutputPump({
        pluginId: 'p',
        logger: pino({ level: 'silent' }),
        onLine: (s, l) => lines.push([s, l]),
      }),
    );
    const frame = (stream: number, text: string) => {
      const head = Buffer.alloc(8);
      head[0] = stream;
      head.writeUInt32BE(Buffer.byteLength(text), 4);
      return Buffer.concat([head, Buffer.from(text)]);
    };
    const raw = Buffer.concat([frame(1, 'out one\nout '), frame(2, 'err one\n'), frame(1, 'two\n')]);
    for (let i = 0; i < raw.length; i += 3) demux.push(raw.subarray(i, i + 3));
    expect(lines).toEqual([
      [1, 'out one'],
      [2, 'err one'],
      [1, 'out two'],
    ]);
  });
});
