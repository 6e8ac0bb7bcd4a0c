import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/protocol/frames.js';
import { MAX_CALL_ARGS, MAX_CALL_WASI_BYTES } from '../../src/runtime/call-wasi.js';
import { createApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { api } from '../helpers/api.js';
import { startHost, text } from '../helpers/host.js';
import { lastingDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

// Per-call WASI args and env for commands (issue 12, item 6): appended after the manifest's args (argv[0] stays the
// plugin id) and merged over its env, never the host's environment; refused for anything but a command.

/** A WASI command printing its argv and environ, one line each. */
const ARGV_C = `#include <stdio.h>
extern char **environ;
int main(int argc, char **argv) {
  for (int i = 0; i < argc; i++) printf("arg %s\\n", argv[i]);
  for (char **e = environ; *e != 0; e++) printf("env %s\\n", *e);
  return 0;
}
`;
/** A plugin of functions (no _start): `ok` returns 0. */
const FUNCTIONS_WASM = Buffer.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01,
  0x00, 0x07, 0x06, 0x01, 0x02, 0x6f, 0x6b, 0x00, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b,
]);

let root: string;
beforeAll(() => {
  root = lastingDir('reed-call-wasi-');
  writePlugin(
    root,
    'argv',
    { id: 'case.argv', wasi: { args: ['--from-manifest'], env: { LANG: 'C', KEEP: '1' } } },
    { 'plugin.wasm': buildWasiC(ARGV_C) },
  );
  writePlugin(root, 'functions', { id: 'case.functions' }, { 'plugin.wasm': FUNCTIONS_WASM });
});

const lines = (out: Uint8Array) => text(out).trimEnd().split('\n');
const hosts: PluginHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.close();
});

describe.each(['none', 'process'] as const)('mode %s', (mode) => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await startHost([root], { mode }));
    hosts.push(host);
  }, 60_000);

  it('appends the call\u2019s args after the manifest\u2019s and merges its env over the manifest\u2019s', async () => {
    const out = await host.call('case.argv', '_start', '', {
      wasi: { args: ['one', 'two words', ''], env: { LANG: 'en_GB', EXTRA: 'a=b' } },
    });
    expect(lines(out.output)).toEqual([
      'arg case.argv',
      'arg --from-manifest',
      'arg one',
      'arg two words',
      'arg ',
      'env LANG=en_GB',
      'env KEEP=1',
      'env EXTRA=a=b',
    ]);
  });

  it('gives the next call only the manifest\u2019s again, and never the host\u2019s environment', async () => {
    await host.call('case.argv', '_start', '', { wasi: { args: ['once'], env: { ONCE: '1' } } });
    const out = await host.call('case.argv', '_start', '');
    expect(lines(out.output)).toEqual(['arg case.argv', 'arg --from-manifest', 'env LANG=C', 'env KEEP=1']);
  });

  it('refuses them for a plugin that is not a command, and the plugin still works', async () => {
    await expect(host.call('case.functions', 'ok', '', { wasi: { args: ['x'] } })).rejects.toMatchObject({
      code: 'wasi_args_not_command',
      pluginId: 'case.functions',
    });
    await expect(host.call('case.functions', 'ok', '', { wasi: { env: { A: '1' } } })).rejects.toMatchObject({
      code: 'wasi_args_not_command',
    });
    expect((await host.call('case.functions', 'ok')).output.length).toBe(0);
  });

  it.each([
    ['too many args', { args: Array.from({ length: MAX_CALL_ARGS + 1 }, () => 'a') }, 'wasi_args_too_large'],
    ['too many bytes', { args: ['x'.repeat(MAX_CALL_WASI_BYTES + 1)] }, 'wasi_args_too_large'],
    [
      'bytes over the cap with env',
      { args: ['x'.repeat(MAX_CALL_WASI_BYTES - 2)], env: { AB: 'c' } },
      'wasi_args_too_large',
    ],
    ['a NUL in an arg', { args: ['a\0b'] }, 'wasi_args_invalid'],
    ['a NUL in a value', { env: { A: 'a\0' } }, 'wasi_args_invalid'],
    ['a bad variable name', { env: { 'A=B': 'c' } }, 'wasi_args_invalid'],
    ['an arg that is not a string', { args: [1] }, 'wasi_args_invalid'],
    ['a value that is not a string', { env: { A: 1 } }, 'wasi_args_invalid'],
    ['an unknown field', { argv: ['x'] }, 'wasi_args_invalid'],
  ])('%s', async (_name, wasi, code) => {
    await expect(
      host.call('case.argv', '_start', '', { wasi: wasi as { args: string[] } }),
    ).rejects.toMatchObject({ code });
  });

  it('takes 256 args and 64 KiB in all, the bound itself', async () => {
    const args = Array.from({ length: MAX_CALL_ARGS }, (_, i) =>
      i === 0 ? 'y'.repeat(MAX_CALL_WASI_BYTES - (MAX_CALL_ARGS - 1)) : 'z',
    );
    const out = lines((await host.call('case.argv', '_start', '', { wasi: { args } })).output);
    expect(out.filter((l) => l.startsWith('arg ')).length).toBe(MAX_CALL_ARGS + 2);
    expect(out[2]).toBe(`arg ${args[0]}`);
  });
});

describe.each(['none', 'process'] as const)('the sandbox, mode %s', (mode) => {
  it('checks the fields itself (a runner its Call frame), for a sandbox called past the host\u2019s check', async () => {
    const { host } = await startHost([root], { mode });
    hosts.push(host);
    const sandbox = host.sandbox('case.argv');
    const bad = (wasi: unknown) => sandbox.call('_start', new Uint8Array(0), { wasi: wasi as never });
    await expect(bad({ args: [7] })).rejects.toMatchObject({ code: 'wasi_args_invalid' });
    await expect(bad({ args: Array.from({ length: MAX_CALL_ARGS + 1 }, () => '') })).rejects.toMatchObject({
      code: 'wasi_args_too_large',
    });
    await expect(bad({ env: { 'NOT VALID': 'x' } })).rejects.toMatchObject({ code: 'wasi_args_invalid' });
    expect(lines((await sandbox.call('_start', new Uint8Array(0))).output)[0]).toBe('arg case.argv');
  }, 60_000);
});

describe('container mode (one case: the Call frame reaches a runner in a container)', () => {
  it('appends the call\u2019s args and merges its env', async () => {
    const { host } = await startHost([root], {
      mode: 'container',
      plugins: ['case.argv'],
      reedToml: '[signatures]\nrequire = "none"\n',
    });
    hosts.push(host);
    const out = await host.call('case.argv', '_start', '', {
      wasi: { args: ['boxed'], env: { LANG: 'sv' } },
    });
    expect(lines(out.output)).toEqual([
      'arg case.argv',
      'arg --from-manifest',
      'arg boxed',
      'env LANG=sv',
      'env KEEP=1',
    ]);
  }, 180_000);
});

describe('the protocol carries them', () => {
  it('a Call frame with 64 KiB of control characters as args passes the frame bounds', () => {
    const args = Array.from({ length: 64 }, () => '\u0001'.repeat(1024));
    const frame = encodeFrame(FrameType.Call, 7, { fn: '_start', wasi: { args } }, new Uint8Array(0));
    const [decoded] = new FrameDecoder(1 << 30).push(frame);
    expect(decoded?.meta.wasi).toEqual({ args });
  });
});

describe('the CLI and the API take them', () => {
  let host: PluginHost;
  let server: Server;
  let socketPath: string;
  beforeAll(async () => {
    ({ host } = await startHost([root]));
    hosts.push(host);
    server = createApiServer(host, { maxInputBytes: 1024 });
    socketPath = join(lastingDir(), 'api.sock');
    await listenOnSocket(server, socketPath);
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const cli = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const status = await main(args, {
      stdout: (t) => void out.push(t),
      stdoutBytes: (b) => void out.push(text(b)),
      stderr: (t) => void err.push(t),
      cwd: root,
      env: {},
    });
    return { status, stdout: out.join(''), stderr: err.join('') };
  };

  it('reed-plugins call --arg X --env K=V (repeatable)', async () => {
    const r = await cli([
      'call',
      'case.argv',
      '_start',
      '--plugin-dir',
      root,
      '--no-default-paths',
      '--arg',
      'first',
      '--arg=--second',
      '--env',
      'LANG=fr',
      '--env',
      'EQ=x=y',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      'arg case.argv\narg --from-manifest\narg first\narg --second\nenv LANG=fr\nenv KEEP=1\nenv EQ=x=y\n',
    );
  });

  it('reed-plugins call: a --env without = is bad usage; args for a plugin of functions are refused', async () => {
    const usage = await cli(['call', 'case.argv', '_start', '--plugin-dir', root, '--env', 'NOEQUALS']);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('NAME=VALUE');
    const refused = await cli([
      'call',
      'case.functions',
      'ok',
      '--plugin-dir',
      root,
      '--no-default-paths',
      '--arg',
      'x',
      '--json',
    ]);
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stdout).error.code).toBe('wasi_args_not_command');
  });

  it('POST /v1/plugins/{id}/call/{fn}?arg=X&env=K=V', async () => {
    const r = await api(
      socketPath,
      'POST',
      '/v1/plugins/case.argv/call/_start?arg=a%20b&arg=c&env=LANG%3Dde',
    );
    expect(r.status).toBe(200);
    expect(r.body.output).toBe(
      'arg case.argv\narg --from-manifest\narg a b\narg c\nenv LANG=de\nenv KEEP=1\n',
    );
  });

  it('the API: 64 KiB of args fit in the request line; errors have their codes', async () => {
    const big = await api(
      socketPath,
      'POST',
      `/v1/plugins/case.argv/call/_start?arg=${encodeURIComponent('\u00e9'.repeat(MAX_CALL_WASI_BYTES / 2 - 1))}`,
    );
    expect(big.status).toBe(200);
    const tooBig = await api(
      socketPath,
      'POST',
      `/v1/plugins/case.argv/call/_start?arg=${'w'.repeat(MAX_CALL_WASI_BYTES + 1)}`,
    );
    expect(tooBig.body.error?.code).toBe('wasi_args_too_large');
    expect(tooBig.status).toBe(422);
    const notCommand = await api(socketPath, 'POST', '/v1/plugins/case.functions/call/ok?env=A%3D1');
    expect(notCommand.body.error?.code).toBe('wasi_args_not_command');
    const unknown = await api(socketPath, 'POST', '/v1/plugins/case.argv/call/_start?args=x');
    expect(unknown).toMatchObject({ status: 400, body: { error: { code: 'api_bad_request' } } });
    const badEnv = await api(socketPath, 'POST', '/v1/plugins/case.argv/call/_start?env=NOEQUALS');
    expect(badEnv).toMatchObject({ status: 400, body: { error: { code: 'api_bad_request' } } });
  });
});
