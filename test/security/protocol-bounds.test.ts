// Adversarial pass, finding 3, and the sweep that followed it: whatever a runner (or a plugin) puts in frame
// metadata, error details, log lines and error messages, the host neither overflows its stack nor keeps
// something large, and nothing it prints can paint the terminal or pass for another plugin's line.
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { encodeFrame, FrameDecoder, FrameType, ProtocolError } from '../../src/protocol/frames.js';
import { createApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { REPO, runCli } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';

const RUNNERS = join(REPO, 'test/fixtures/runners');
const HELLO = [join(REPO, 'examples/plugins')];
const FAST = { startTimeoutMs: 5_000, graceMs: 500, restartBaseMs: 20, restartMaxMs: 200, maxCrashes: 5 };
// What must never reach a terminal raw: C0 controls but tab, DEL, C1 controls, line/paragraph separators, bidi.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is looked for
const UNPRINTABLE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function hostileHost(runner: string) {
  const started = await startHost(HELLO, {
    mode: 'process',
    plugins: ['example.hello'],
    reedToml: '[signatures]\nrequire = "none"\n',
    supervision: FAST,
    runnerCommand: [process.execPath, join(RUNNERS, runner)],
  });
  hosts.push(started.host);
  return started;
}

const attack = (host: PluginHost, how: string) =>
  host.call('example.hello', 'attack', Buffer.from(how)).then(
    () => {
      throw new Error(`${how}: the call succeeded`);
    },
    (error: unknown) => error as ReedError,
  );

/** A frame with metadata given as text (what no JSON.stringify would make, or could). */
function rawFrame(type: number, id: number, metaText: string): Buffer {
  const meta = Buffer.from(metaText);
  const frame = Buffer.alloc(13 + meta.length);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(type, 4);
  frame.writeUInt32BE(id, 5);
  frame.writeUInt32BE(meta.length, 9);
  meta.copy(frame, 13);
  return frame;
}

describe('frame metadata is bounded in depth and size, on every frame', () => {
  it('the decoder refuses deep metadata before parsing it, and metadata larger than its frame type needs', () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const decode = (frame: Buffer) => new FrameDecoder(64 * 1024 * 1024).push(frame);
    for (const type of Object.values(FrameType)) {
      expect(() => decode(rawFrame(type, 1, `{"x":${deep(100_000)}}`)), `type ${type}`).toThrow(
        ProtocolError,
      );
    }
    expect(() => decode(rawFrame(FrameType.Error, 1, `{"x":${deep(64)}}`))).toThrow(ProtocolError);
    const big = { code: 'plugin_error', message: 'x', pad: 'a'.repeat(2 * 1024 * 1024) };
    expect(() => decode(encodeFrame(FrameType.Error, 1, big))).toThrow(ProtocolError);
    expect(() => decode(encodeFrame(FrameType.Pong, 1, { pad: 'a'.repeat(1024 * 1024) }))).toThrow(
      ProtocolError,
    );
    expect(() => decode(rawFrame(99, 1, '{}'))).toThrow(ProtocolError);
    // What the protocol itself sends still passes: a HostCall with a large argument, a Welcome's nested spec.
    const hostCall = encodeFrame(FrameType.HostCall, 1, {
      op: 'event_emit',
      args: ['t', 'x'.repeat(1 << 20)],
    });
    expect(decode(hostCall)[0]?.meta.op).toBe('event_emit');
    let configuration: unknown = 'leaf';
    for (let i = 0; i < 32; i++) configuration = [configuration];
    const welcome = encodeFrame(FrameType.Welcome, 0, { plugin: { configuration: { k: configuration } } });
    expect(decode(welcome)[0]?.type).toBe(FrameType.Welcome);
  });

  it('error details nested 100,000 deep: the call fails with protocol_violation, the host lives on', async () => {
    const { host } = await hostileHost('deep-details.mjs');
    expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
    const error = await attack(host, 'x');
    expect(error.code).toBe('protocol_violation');
    expect(() => JSON.stringify(error)).not.toThrow();
    expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
  });

  it.each(['deep-log', 'deep-result', 'huge-result-meta'])(
    '%s: the runner is stopped with protocol_violation; the next call works',
    async (how) => {
      const { host } = await hostileHost('meta-bombs.mjs');
      expect((await attack(host, how)).code).toBe('protocol_violation');
      expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
    },
  );
});

describe('error details from a runner are kept only when shallow and small', () => {
  it.each(['wide-details', 'many-details', 'nested-details'])(
    '%s: the error keeps its code and message, without the details',
    async (how) => {
      const { host } = await hostileHost('meta-bombs.mjs');
      const error = await attack(host, how);
      expect(error.code).toBe('plugin_error');
      expect(error.details).toBeUndefined();
    },
  );

  it('quota_exceeded details the host never answered the runner are dropped (the code stays)', async () => {
    const { host } = await hostileHost('meta-bombs.mjs');
    const error = await attack(host, 'forged-quota');
    expect(error.code).toBe('quota_exceeded');
    expect(error.details).toBeUndefined();
  });

  it('small, flat details arrive as they were sent', async () => {
    const { host } = await hostileHost('meta-bombs.mjs');
    const error = await attack(host, 'small-details');
    expect(error).toMatchObject({ code: 'plugin_error', details: { pluginCode: 'db_down', status: 3 } });
  });
});

describe('the serve API answers every failure and never dies of one', () => {
  async function serve(host: Pick<PluginHost, 'call' | 'status' | 'logger'>) {
    const server = createApiServer(host as PluginHost, { maxInputBytes: 1024 });
    const socketPath = join(tempDir(), 'api.sock');
    await listenOnSocket(server, socketPath);
    const post = (path: string, method = 'POST') =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const req = request({ socketPath, path, method }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
        });
        req.on('error', reject);
        req.end('x');
      });
    return { server, post };
  }

  it('a hostile runner’s deep error details: an answer, and the server still serves', async () => {
    const { host } = await hostileHost('deep-details.mjs');
    const { server, post } = await serve(host);
    try {
      const answer = await post('/v1/plugins/example.hello/call/attack');
      expect(answer.body).toMatchObject({ ok: false, error: { code: 'protocol_violation' } });
      expect((await post('/v1/health', 'GET')).body).toEqual({ ok: true });
    } finally {
      server.close();
    }
  });

  it('an error it cannot serialize (deep or circular details) is a fixed internal_error answer', async () => {
    // No runner can hand the host such an error any more (the cases above); this is the server's own last line.
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) deep = { deep };
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const real = (await hostileHost('meta-bombs.mjs')).host;
    for (const details of [deep, circular]) {
      const host = {
        logger: real.logger,
        status: () => real.status(),
        call: () => Promise.reject(new ReedError('plugin_error', 'boom', { details })),
      };
      const { server, post } = await serve(host as unknown as PluginHost);
      try {
        const answer = await post('/v1/plugins/p/call/f');
        expect(answer).toEqual({
          status: 500,
          body: { ok: false, error: { code: 'internal_error', message: expect.any(String) } },
        });
        expect((await post('/v1/health', 'GET')).body).toEqual({ ok: true });
      } finally {
        server.close();
      }
    }
  });
});

describe('plugin text cannot paint the terminal or forge another plugin’s lines', () => {
  it('a runner’s log line and error message arrive escaped, under its own plugin id', async () => {
    const { host, logs } = await hostileHost('meta-bombs.mjs');
    const error = await attack(host, 'forge');
    expect(error.code).toBe('plugin_error');
    expect(error.message).not.toMatch(UNPRINTABLE);
    expect(error.message).toContain('forged line');
    const mine = logs.filter((l) => l.msg.includes('mine'));
    expect(mine).toHaveLength(1);
    expect(mine[0]?.pluginId).toBe('example.hello');
    expect(mine[0]?.msg).not.toMatch(UNPRINTABLE);
    expect(logs.some((l) => l.pluginId === 'victim.other' || l.msg === 'forged')).toBe(false);
  });

  it('in mode none too, a WASM plugin’s error code and message arrive escaped', async () => {
    const started = await startHost([join(REPO, 'test/fixtures/terminal')], { mode: 'none' });
    hosts.push(started.host);
    const error = (await started.host
      .call('terminal.ansi-error', 'attack')
      .catch((e: unknown) => e)) as ReedError;
    expect(error).toMatchObject({ code: 'plugin_error', details: { status: 3 } });
    expect(error.message).toContain('forged line');
    expect(error.message).not.toMatch(UNPRINTABLE);
    expect(String(error.details?.pluginCode)).not.toMatch(UNPRINTABLE);
  });

  it('`call` prints a plugin’s error code and message escaped, on one line; `--json` keeps them as data', () => {
    const args = ['call', '--plugin-dir', 'test/fixtures/terminal', '--no-default-paths', '--mode', 'none'];
    const plain = runCli([...args, 'terminal.ansi-error', 'attack']);
    expect(plain.status).toBe(1);
    const lines = plain.stderr.split('\n').filter((l) => l.startsWith('error '));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error plugin_error: /);
    expect(plain.stderr.replaceAll('\n', '')).not.toMatch(UNPRINTABLE);

    const json = runCli([...args, 'terminal.ansi-error', 'attack', '--json']);
    expect(json.status).toBe(1);
    expect(json.stdout.replaceAll('\n', '')).not.toMatch(UNPRINTABLE);
    const parsed = JSON.parse(json.stdout) as { error: { code: string; message: string } };
    expect(parsed.error.code).toBe('plugin_error');
    expect(parsed.error.message).toContain('forged line');
  });
  it('`discover` and `validate` print a manifest’s strings escaped (name, version, a diagnostic quoting them)', () => {
    const root = tempDir();
    const esc = '\\u001b[2J\\u001b[31m';
    writePlugin(
      root,
      'p',
      `[metadata]\nid = "term.p"\nname = "evil${esc}\\nERROR forged\\u009b"\nversion = "1.0${esc}\\u202e"\napi_version = "1.0.0"\n`,
    );
    for (const command of ['discover', 'validate']) {
      const r = runCli([command, '--plugin-dir', root, '--no-default-paths']);
      expect(r.stdout, command).toContain('term.p');
      expect(r.stdout.replaceAll('\n', ''), command).not.toMatch(UNPRINTABLE);
      expect(r.stdout, command).not.toMatch(/^ERROR forged/m);
    }
  });
});
