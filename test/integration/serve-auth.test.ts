import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runCli } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

// `reed-plugins serve` (the built CLI: npm run build) with --admin-token-file and --listen (TLS, mutual TLS): tokens
// on the socket and on TCP, the token routes, and nothing of a token in its log (debug level).

const BIN = join(REPO, 'bin/reed-plugins.js');
const EXAMPLES = join(REPO, 'examples/plugins');
const ADMIN = 'Zq3'.repeat(15);

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: { ok: boolean; output?: string; token?: string; id?: string; error?: { code: string } };
  text: string;
}

type Via = { socketPath: string } | { port: number; ca: Buffer; cert?: Buffer; key?: Buffer };

function call(via: Via, method: string, path: string, token?: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text), text });
        } catch (error) {
          reject(error);
        }
      });
    };
    const req =
      'socketPath' in via
        ? httpRequest({ socketPath: via.socketPath, method, path, headers }, onResponse)
        : httpsRequest(
            {
              host: '127.0.0.1',
              port: via.port,
              method,
              path,
              headers,
              ca: via.ca,
              agent: false,
              ...(via.cert === undefined ? {} : { cert: via.cert, key: via.key }),
            },
            onResponse,
          );
    req.on('error', reject);
    req.end(body);
  });
}

interface Serve {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function spawnServe(dir: string, args: string[]): Serve {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--no-default-paths',
      '--plugin-dir',
      EXAMPLES,
      '--plugin',
      'example.hello',
      '--mode',
      'none',
      ...args,
    ],
    {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, REED_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  child.stdout?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

async function serving(serve: Serve): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (serve.stderr().includes('serving ')) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
    void serve.exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`serve exited with ${code} before serving: ${serve.stderr()}`));
    });
  });
  return serve.stderr();
}

function serveDir(): string {
  const dir = lastingDir('reed-serve-auth-');
  writeFileSync(join(dir, 'reed.toml'), 'runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n');
  writeFileSync(join(dir, 'admin-token'), `${ADMIN}\n`, { mode: 0o600 });
  return dir;
}

describe('serve refuses to start', () => {
  it('with an admin token file open to group or others, saying which file and how to fix it', async () => {
    const dir = serveDir();
    chmodSync(join(dir, 'admin-token'), 0o644);
    const result = runCli(
      [
        'serve',
        '--no-default-paths',
        '--socket',
        join(dir, 'api.sock'),
        '--admin-token-file',
        join(dir, 'admin-token'),
      ],
      { cwd: dir, home: dir },
    );
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('admin_token_file_invalid');
    expect(result.stderr).toContain(join(dir, 'admin-token'));
    expect(result.stderr).toContain('chmod 600');
    expect(result.stderr).not.toContain(ADMIN);
  });

  it('with --listen and no TLS certificate or key, or TLS options without --listen', () => {
    const dir = serveDir();
    const base = ['serve', '--no-default-paths', '--socket', join(dir, 'api.sock')];
    for (const args of [
      ['--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'x.pem')],
      ['--tls-cert', join(dir, 'x.pem'), '--tls-key', join(dir, 'x.pem')],
      ['--listen', 'nonsense'],
    ]) {
      const result = runCli([...base, ...args], { cwd: dir, home: dir });
      expect([args, result.status]).toEqual([args, 2]);
      expect(result.stderr).toMatch(/--listen|--tls/);
    }
  });
});

describe('serve with --admin-token-file and --listen (mutual TLS)', () => {
  let pki: TestPki;
  let serve: Serve;
  let socket: { socketPath: string };
  let tls: { port: number; ca: Buffer; cert: Buffer; key: Buffer };
  const seen: string[] = [];

  beforeAll(async () => {
    pki = makeTestPki();
    const dir = serveDir();
    socket = { socketPath: join(dir, 'api.sock') };
    serve = spawnServe(dir, [
      '--socket',
      socket.socketPath,
      '--admin-token-file',
      join(dir, 'admin-token'),
      '--listen',
      '127.0.0.1:0',
      '--tls-cert',
      pki.serverCert,
      '--tls-key',
      pki.serverKey,
      '--tls-client-ca',
      pki.caCert,
    ]);
    const line = await serving(serve);
    const port = Number(/https:\/\/127\.0\.0\.1:([0-9]+)/.exec(line)?.[1]);
    expect(port).toBeGreaterThan(0);
    tls = { port, ca: pki.read(pki.caCert), cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) };
  });
  afterAll(async () => {
    serve.child.kill('SIGTERM');
    await serve.exited;
    rmSync(pki.dir, { recursive: true, force: true });
  });

  it('the socket needs a token once an admin token file is given; the admin token reaches everything', async () => {
    const none = await call(socket, 'POST', '/v1/plugins/example.hello/call/greet', undefined, 'x');
    expect([none.status, none.body.error?.code]).toEqual([401, 'unauthenticated']);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect((await call(socket, 'GET', '/v1/health')).status).toBe(200);
    const ok = await call(socket, 'POST', '/v1/plugins/example.hello/call/greet', ADMIN, 'world');
    expect(ok.status).toBe(200);
    expect(ok.body.output).toContain('world');
    expect((await call(tls, 'GET', '/v1/plugins', ADMIN)).status).toBe(200);
  });

  it('a tenant token over mutual TLS: its tenant only, 403 on admin routes, 404 elsewhere, 401 once revoked', async () => {
    const made = await call(socket, 'POST', '/v1/admin/tenants/default/tokens', ADMIN);
    expect(made.status).toBe(201);
    const token = made.body.token as string;
    seen.push(token);
    const greet = await call(tls, 'POST', '/v1/plugins/example.hello/call/greet', token, 'tls');
    expect([greet.status, greet.body.output]).toEqual([200, expect.stringContaining('tls')]);
    expect((await call(tls, 'GET', '/v1/tenants/default/plugins', token)).status).toBe(200);
    const admin = await call(tls, 'DELETE', '/v1/admin/plugins/example.hello', token);
    expect([admin.status, admin.body.error?.code]).toEqual([403, 'forbidden']);
    expect((await call(tls, 'GET', '/v1/admin/tenants/default/tokens', token)).status).toBe(403);
    const other = await call(tls, 'GET', '/v1/tenants/elsewhere/plugins', token);
    expect([other.status, other.body.error?.code]).toEqual([404, 'tenant_not_found']);

    const none = await call({ ...tls }, 'GET', '/v1/plugins');
    expect([none.status, none.body.error?.code]).toEqual([401, 'unauthenticated']);

    const listed = await call(socket, 'GET', '/v1/admin/tenants/default/tokens', ADMIN);
    expect(listed.text).toContain(made.body.id as string);
    expect(listed.text).not.toContain(token.slice(22));
    expect(
      (await call(socket, 'DELETE', `/v1/admin/tenants/default/tokens/${made.body.id}`, ADMIN)).status,
    ).toBe(200);
    const revoked = await call(tls, 'GET', '/v1/plugins', token);
    expect([revoked.status, revoked.body.error?.code]).toEqual([401, 'unauthenticated']);
  });

  it('refuses a TLS client with no certificate, or with one of another CA', async () => {
    await expect(call({ port: tls.port, ca: tls.ca }, 'GET', '/v1/health')).rejects.toThrow();
    await expect(
      call(
        {
          port: tls.port,
          ca: tls.ca,
          cert: pki.read(pki.otherClientCert),
          key: pki.read(pki.otherClientKey),
        },
        'GET',
        '/v1/health',
      ),
    ).rejects.toThrow();
    expect((await call(tls, 'GET', '/v1/health')).status).toBe(200);
  });

  it('the CLI sends a token with --token-file (status), and without it is refused with unauthenticated', () => {
    const dir = join(socket.socketPath, '..');
    const withToken = runCli(
      ['status', '--socket', socket.socketPath, '--token-file', join(dir, 'admin-token'), '--json'],
      { cwd: dir, home: dir },
    );
    expect(withToken.status).toBe(0);
    expect(JSON.parse(withToken.stdout).plugins).toContainEqual(
      expect.objectContaining({ id: 'example.hello' }),
    );
    const without = runCli(['status', '--socket', socket.socketPath], { cwd: dir, home: dir });
    expect(without.status).toBe(1);
    expect(without.stderr).toContain('unauthenticated');
  });

  it('writes nothing of a token to its log', () => {
    expect(seen.length).toBeGreaterThan(0);
    const log = serve.stderr();
    expect(log.length).toBeGreaterThan(0);
    for (const token of [...seen, ADMIN]) {
      expect(log).not.toContain(token);
      expect(log).not.toContain(token.slice(-20));
    }
  });
});

describe('serve with two tenants of reed.toml and one made through the API (mode none)', () => {
  let serve: Serve;
  let dir: string;
  let socket: { socketPath: string };
  const secrets: string[] = [];

  beforeAll(async () => {
    dir = serveDir();
    writeFileSync(
      join(dir, 'reed.toml'),
      `runtime_dir = "runtime"\ncache_dir = "cache"\ndata_dir = "data"\n` +
        `[tenants.acme]\nplugin_dirs = [${JSON.stringify(EXAMPLES)}]\n` +
        `[tenants.bravo]\nplugin_dirs = [${JSON.stringify(EXAMPLES)}]\n`,
    );
    socket = { socketPath: join(dir, 'api.sock') };
    serve = spawnServe(dir, ['--socket', socket.socketPath, '--admin-token-file', join(dir, 'admin-token')]);
    await serving(serve);
  });
  afterAll(async () => {
    serve.child.kill('SIGTERM');
    await serve.exited;
  });

  async function tokenFor(tenant: string): Promise<string> {
    const made = await call(socket, 'POST', `/v1/admin/tenants/${tenant}/tokens`, ADMIN);
    expect(made.status).toBe(201);
    secrets.push(made.body.token as string);
    return made.body.token as string;
  }

  it('a tenant token calls its own tenant\u2019s plugin; the same plugin id of another tenant is a 404 that says nothing', async () => {
    const acme = await tokenFor('acme');
    const bravo = await tokenFor('bravo');
    const greet = '/plugins/example.hello/call/greet';
    const own = await call(socket, 'POST', `/v1/tenants/acme${greet}`, acme, 'acme');
    expect([own.status, own.body.output]).toEqual([200, expect.stringContaining('acme')]);
    expect((await call(socket, 'POST', `/v1/tenants/bravo${greet}`, bravo, 'b')).status).toBe(200);

    const other = await call(socket, 'POST', `/v1/tenants/bravo${greet}`, acme, 'x');
    const nosuch = await call(socket, 'POST', `/v1/tenants/nosuch${greet}`, ADMIN, 'x');
    expect([other.status, other.body.error?.code]).toEqual([404, 'tenant_not_found']);
    expect(other.text.replace('bravo', 'T')).toBe(nosuch.text.replace('nosuch', 'T'));
    expect((await call(socket, 'GET', '/v1/tenants/bravo/plugins', acme)).status).toBe(404);
    expect((await call(socket, 'GET', '/v1/plugins', acme)).status).toBe(404);
    expect((await call(socket, 'GET', '/v1/tenants/acme/usage', acme)).status).toBe(200);
    expect((await call(socket, 'GET', '/v1/tenants/bravo/usage', acme)).status).toBe(404);
    const admin = await call(socket, 'GET', '/v1/admin/tenants', acme);
    expect([admin.status, admin.body.error?.code]).toEqual([403, 'forbidden']);
    expect((await call(socket, 'DELETE', '/v1/tenants/bravo/plugins/example.hello', acme)).status).toBe(404);
    expect((await call(socket, 'GET', '/v1/tenants/bravo/plugins/example.hello', bravo)).status).toBe(200);
  });

  it('a tenant made through the API and deleted takes its tokens with it', async () => {
    const put = (await new Promise<Reply>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: socket.socketPath,
          method: 'PUT',
          path: '/v1/admin/tenants/carol',
          headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text), text });
          });
        },
      );
      req.on('error', reject);
      req.end('{}');
    })) as Reply;
    expect(put.status).toBe(200);
    const carol = await tokenFor('carol');
    expect((await call(socket, 'GET', '/v1/tenants/carol/plugins', carol)).status).toBe(200);
    expect((await call(socket, 'DELETE', '/v1/admin/tenants/carol', ADMIN)).status).toBe(200);
    const gone = await call(socket, 'GET', '/v1/tenants/carol/plugins', carol);
    expect([gone.status, gone.body.error?.code]).toEqual([401, 'unauthenticated']);
  });

  it('the audit log under data_dir has the denials and admin actions, by token id, never a token', () => {
    const log = readFileSync(join(dir, 'data', 'audit', 'audit.log'), 'utf8');
    const lines = log
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.some((l) => l.kind === 'denied' && l.status === 403 && l.outcome === 'forbidden')).toBe(
      true,
    );
    expect(lines.some((l) => l.kind === 'denied' && l.status === 404 && l.tenant === 'bravo')).toBe(true);
    expect(
      lines.some((l) => l.kind === 'done' && l.route === '/v1/admin/tenants/carol' && l.method === 'DELETE'),
    ).toBe(true);
    for (const secret of [...secrets, ADMIN]) {
      expect(log).not.toContain(secret.slice(-24));
      expect(serve.stderr()).not.toContain(secret.slice(-24));
    }
  });
});
