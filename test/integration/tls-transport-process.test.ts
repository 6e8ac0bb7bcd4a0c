import { existsSync, readFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { ORCHESTRATOR_SERVERNAME } from '../../src/pki/orchestrator-ca.js';
import { encodeFrame, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { parseTlsAddress } from '../../src/transport/tls-address.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { runnerNodePid } from '../helpers/processes.js';

// Process mode with `runnerTransport: 'tls'` (npm run build first: the runner runs from dist/): the runner is
// started with `--connect tls://127.0.0.1:PORT`, verifies the orchestrator's certificate and says its Hello over
// TLS. The conformance suite runs in this mode too (test/helpers/conformance-cases.ts, "process over TLS").

const closed = (socket: Socket) =>
  new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r())));

describe('process mode over the TLS transport', () => {
  let host: PluginHost;
  let logs: { msg?: string; code?: string }[];
  let runner: { pid: number; argv: string[]; env: string[]; dir: string };
  beforeAll(async () => {
    ({ host, logs } = await startHost([join(REPO, 'examples/plugins')], {
      mode: 'process',
      plugins: ['example.hello'],
      runnerTransport: 'tls',
    }));
    const sandbox = (host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox;
    const bwrap = sandbox.runner?.pid as number;
    const pid = runnerNodePid(bwrap);
    runner = {
      pid,
      argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'),
      env: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'),
      dir: sandbox.runner?.dir as string,
    };
  }, 120_000);
  afterAll(() => host?.close());

  const address = () => runner.argv[runner.argv.indexOf('--connect') + 1] as string;

  it('the runner dials tls://127.0.0.1:PORT with the CA and the name, and serves calls', async () => {
    expect(address()).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    expect(runner.argv).not.toContain('--socket');
    expect(runner.env.some((e) => e.startsWith('REED_TLS_CA=-----BEGIN CERTIFICATE-----'))).toBe(true);
    expect(runner.env).toContain(`REED_TLS_SERVERNAME=${ORCHESTRATOR_SERVERNAME}`);
    // Neither the secret nor a Unix socket: the secret came on fd 3, and no socket was made.
    expect(runner.env.some((e) => /[0-9a-f]{64}/.test(e))).toBe(false);
    expect(existsSync(join(runner.dir, 's.sock'))).toBe(false);
    const { output } = await host.call('example.hello', 'echo', 'x'.repeat(64));
    expect(text(output)).toBe('x'.repeat(64));
  });

  it('the sandbox\u2019s port refuses any other connection, plaintext or TLS, and the plugin goes on', async () => {
    const { port } = parseTlsAddress(address());
    const plain = connectTcp(port, '127.0.0.1');
    plain.on('error', () => {});
    plain.write(
      encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId: 'example.hello', secret: 'x' }),
    );
    const tls = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false });
    tls.on('error', () => {});
    await Promise.all([closed(plain), closed(tls)]);
    const deadline = Date.now() + 10_000;
    while (
      logs.filter((l) => l.msg?.includes('refused a second connection')).length < 2 &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 20));
    expect(logs.filter((l) => l.msg?.includes('refused a second connection'))).toHaveLength(2);
    const { output } = await host.call('example.hello', 'greet', 'tls');
    expect(text(output)).toBe('Hello, tls!');
    expect(host.status().find((s) => s.id === 'example.hello')?.state).toBe('ready');
  });
});
