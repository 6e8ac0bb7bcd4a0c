import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_SERVERNAME, OrchestratorCa } from '../../src/pki/orchestrator-ca.js';
import { FrameDecoder, FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

// The sandbox-runner program itself (dist/: npm run build first) dialing tls://: it says its Hello, with the
// secret, to the orchestrator its CA vouches for, and to nothing else. A server stands in for the orchestrator and
// records every byte of application data it receives.

const SECRET = 'f'.repeat(64);
let ca: OrchestratorCa;
let foreign: OrchestratorCa;
beforeAll(async () => {
  ca = await OrchestratorCa.create();
  foreign = await OrchestratorCa.create();
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A TLS 1.3 server with a certificate of `issuer`, collecting what each client sends. */
async function recordingServer(issuer: OrchestratorCa): Promise<{ port: number; received: Buffer[] }> {
  const credentials = await issuer.issueServer({ ipAddresses: ['127.0.0.1'] });
  const received: Buffer[] = [];
  const server: Server = createServer(
    { cert: credentials.certPem, key: credentials.keyPem, minVersion: 'TLSv1.3' },
    (socket) => {
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.on('error', () => {});
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, received };
}

/** Runs the runner against `port` with `caPem`; resolves with its exit code and stderr once it exits. */
function runRunner(port: number, caPem: string): Promise<{ code: number | null; stderr: string }> {
  const dir = tempDir();
  writeFileSync(join(dir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
  const child = spawn(
    process.execPath,
    [
      join(REPO, 'dist/runner/main.js'),
      '--plugin-id',
      'example.hello',
      '--connect',
      `tls://127.0.0.1:${port}`,
    ],
    {
      env: {
        PATH: process.env.PATH ?? '',
        REED_TLS_CA: caPem,
        REED_TLS_SERVERNAME: ORCHESTRATOR_SERVERNAME,
        REED_SECRET_FILE: join(dir, 'secret'),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  cleanups.push(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

describe('the runner program over tls://', () => {
  it('sends its Hello (protocol, plugin id, the secret from REED_SECRET_FILE) to the orchestrator its CA vouches for', async () => {
    const server = await recordingServer(ca);
    const run = runRunner(server.port, ca.certPem);
    const deadline = Date.now() + 60_000;
    const decoder = new FrameDecoder(1 << 20);
    let hello: ReturnType<FrameDecoder['push']>[number] | undefined;
    while (hello === undefined && Date.now() < deadline) {
      for (const chunk of server.received.splice(0)) hello ??= decoder.push(chunk)[0];
      if (hello === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(hello?.type).toBe(FrameType.Hello);
    expect(hello?.meta).toEqual({ protocol: PROTOCOL_VERSION, pluginId: 'example.hello', secret: SECRET });
    void run; // killed by the clean-up
  });

  it('refuses a server whose certificate another CA issued: it exits, and the server got no byte of data', async () => {
    const server = await recordingServer(foreign);
    const { code, stderr } = await runRunner(server.port, ca.certPem);
    expect(code).toBe(1);
    expect(stderr).toMatch(/connection to tls:\/\/127\.0\.0\.1:\d+ failed/);
    expect(Buffer.concat(server.received).length).toBe(0);
  });
});
