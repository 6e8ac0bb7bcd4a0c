import { once } from 'node:events';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, expectConformantCall, type ServeProcess, startServe } from '../helpers/api.js';
import { REPO, runCli } from '../helpers/cli.js';
import { CALLS, CONFORMANCE_TOML } from '../helpers/conformance-cases.js';
import { lastingDir } from '../helpers/plugin-tree.js';

const EXAMPLES = join(REPO, 'examples/plugins');
const HOSTILE = join(REPO, 'test/fixtures/hostile');

/** A directory (outliving the test that starts a server in it) with the conformance suite's reed.toml. */
function serveDir(): string {
  const dir = lastingDir('reed-serve-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n${CONFORMANCE_TOML}`,
  );
  return dir;
}

describe('reed-plugins serve: the conformance suite through the API (mode none)', () => {
  let server: ServeProcess;
  beforeAll(async () => {
    server = await startServe(serveDir(), [
      '--plugin-dir',
      EXAMPLES,
      '--plugin-dir',
      HOSTILE,
      '--mode',
      'none',
      '--max-input-bytes',
      '1024',
    ]);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  it.each(CALLS)('%s.%s(%j)', (...call) => expectConformantCall(server.socket, call));

  it('answers health and lists every plugin with its mode and state', async () => {
    expect(await api(server.socket, 'GET', '/v1/health')).toEqual({ status: 200, body: { ok: true } });
    const { status, body } = await api(server.socket, 'GET', '/v1/plugins');
    expect(status).toBe(200);
    expect(body.plugins).toContainEqual(
      expect.objectContaining({ id: 'example.hello', mode: 'none', state: 'ready' }),
    );
    expect(body.plugins).toContainEqual(
      expect.objectContaining({
        id: 'hostile.malformed',
        state: 'failed',
        error: expect.objectContaining({ code: 'wasm_invalid' }),
      }),
    );
  });

  it('returns output that is not UTF-8 as base64', async () => {
    const { body } = await api(
      server.socket,
      'POST',
      '/v1/plugins/example.hello/call/echo',
      new Uint8Array([0xff, 0, 1]),
    );
    expect(body).toMatchObject({
      ok: true,
      outputEncoding: 'base64',
      output: Buffer.from([0xff, 0, 1]).toString('base64'),
    });
  });

  it('gives every bad request a stable code and status, and keeps serving', async () => {
    const cases: [method: string, path: string, body: string | undefined, status: number, code: string][] = [
      ['GET', '/v1/nothing', undefined, 404, 'api_not_found'],
      ['GET', '/', undefined, 404, 'api_not_found'],
      ['POST', '/v1/plugins', undefined, 405, 'api_method_not_allowed'],
      ['GET', '/v1/plugins/example.hello/call/greet', undefined, 405, 'api_method_not_allowed'],
      ['POST', '/v1/plugins/no.such/call/greet', '', 404, 'plugin_not_loaded'],
      ['POST', '/v1/plugins/%E0%A4%A/call/greet', '', 404, 'api_not_found'],
      ['POST', '/v1/plugins/example.hello/call/%2e%2e', '', 404, 'api_not_found'],
      ['POST', '/v1/plugins/example.hello/call/a%2Fb', '', 404, 'function_not_found'],
      ['POST', '/v1/plugins/example.hello/call/greet', 'x'.repeat(1025), 413, 'request_too_large'],
      ['POST', '/v1/plugins/../../etc/passwd', '', 404, 'api_not_found'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await api(server.socket, method, path, body);
      expect({ method, path, status: res.status, code: res.body.error?.code }).toEqual({
        method,
        path,
        status,
        code,
      });
    }
    expect((await api(server.socket, 'GET', '/v1/health')).status).toBe(200);
  });

  it('makes the socket usable only by its own user', () => {
    expect(statSync(server.socket).mode & 0o777).toBe(0o600);
  });
});

/** `serve` of example.hello alone, in `mode`. */
const HELLO_ONLY = (mode: string) => ['--plugin-dir', EXAMPLES, '--plugin', 'example.hello', '--mode', mode];

describe('reed-plugins serve: start and stop', () => {
  it('stops on SIGTERM: exit 0, socket removed, no runner or sandbox directory left (process mode)', async () => {
    const dir = serveDir();
    const server = await startServe(dir, HELLO_ONLY('process'));
    expect((await api(server.socket, 'POST', '/v1/plugins/example.hello/call/greet', 'A')).body.output).toBe(
      'Hello, A!',
    );
    expect(readdirSync(join(dir, 'runtime/sandboxes'))).toHaveLength(1);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(readdirSync(dir)).not.toContain('api.sock');
    expect(readdirSync(join(dir, 'runtime/sandboxes'))).toEqual([]);
  });

  it('refuses a socket a live server holds, and replaces one a killed server left', async () => {
    const dir = serveDir();
    const first = await startServe(dir, HELLO_ONLY('none'));
    const second = runCli(['serve', '--socket', first.socket, '--no-default-paths', ...HELLO_ONLY('none')], {
      cwd: dir,
      home: dir,
    });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain('error api_socket_in_use');
    expect((await api(first.socket, 'GET', '/v1/health')).status).toBe(200);

    first.child.kill('SIGKILL');
    await first.exited;
    const third = await startServe(dir, HELLO_ONLY('none'));
    expect((await api(third.socket, 'GET', '/v1/health')).status).toBe(200);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  });

  it('refuses to replace a file that is not a socket', () => {
    const dir = serveDir();
    writeFileSync(join(dir, 'api.sock'), 'precious');
    const r = runCli(['serve', '--socket', join(dir, 'api.sock'), '--no-default-paths'], {
      cwd: dir,
      home: dir,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('error api_socket_in_use');
  });

  it('says why it cannot listen where it was told to', () => {
    const dir = serveDir();
    const r = runCli(['serve', '--socket', join(dir, 'no/such/dir/api.sock'), '--no-default-paths'], {
      cwd: dir,
      home: dir,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /error api_socket_failed: cannot listen on \S+no\/such\/dir\/api.sock: (ENOENT|EACCES)/,
    );
  });

  it('says what is wrong with its command line', () => {
    expect(runCli(['serve']).stderr).toContain('--socket PATH is required');
    expect(runCli(['serve', '--socket', '/tmp/x.sock', '--mode', 'vm']).status).toBe(2);
    expect(runCli(['serve', '--socket', '/tmp/x.sock', '--socket-mode', '999']).status).toBe(2);
    expect(runCli(['serve', '--socket', '/tmp/x.sock', '--max-input-bytes', '-1']).status).toBe(2);
  });
});

describe('reed-plugins serve: a stop is not held by a client', () => {
  it('SIGTERM while a client holds a request half sent: serve cuts it after its grace and exits cleanly', async () => {
    const server = await startServe(serveDir(), ['--plugin-dir', EXAMPLES, '--mode', 'none']);
    const client = connect(server.socket);
    await once(client, 'connect');
    // Headers promise 100 bytes; two come, the rest never does (requestTimeout is 60 s: this used to hold the stop
    // that long, past docker-compose's stop grace, and the orchestrator was killed with its containers running).
    client.write(
      'POST /v1/plugins/example.hello/call/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab',
    );
    const clientClosed = once(client, 'close');
    client.on('error', () => {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    server.child.kill('SIGTERM');
    // Well within this test's 45 s: the grace is SHUTDOWN_GRACE_MS (10 s), the request timeout it replaces 60 s.
    expect(await server.exited).toBe(0);
    await clientClosed;
    expect(server.stderr()).toContain('SIGTERM: stopping');
  }, 45_000);
});
