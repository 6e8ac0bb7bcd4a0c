import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { MemoryStorage } from '../../src/host/services.js';
import { buildApi } from '../../src/server/api-server.js';
import { Authenticator } from '../../src/server/auth.js';
import { DEFAULT_BODIES_PER_TENANT } from '../../src/server/call-route.js';
import { TenantRegistry } from '../../src/tenants/registry.js';
import { TenantHost } from '../../src/tenants/tenant-host.js';
import { TokenStore } from '../../src/tenants/tokens.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

/**
 * Adversarial pass (session 10): a tenant token against the deferred calls of TenantHost's turn slice
 * (TURN_SLICE_MS). The API bounded the call bodies a tenant without max_concurrent_calls may have being read
 * (DEFAULT_BODIES_PER_TENANT), but a body once read went to TenantHost.call, and a call past the tenant's slice waits
 * in its queue, input and all, for a later turn (mode none: a slow function runs one a turn; process mode: a few
 * starts pass the slice). Requests pipelined on a connection are read several a turn, faster than the queue drains:
 * a client pipelining calls of a slow function of its own plugin made the host hold as many calls (and inputs, up to
 * maxInputBytes each) as it sent (365 of 384 in mode none, 367 in process mode). The API now counts a body until its
 * call is answered (CallBodies): past the bound a request is refused before its body is read, with
 * `Connection: close` (the pipelined requests behind it are not run, and the client is told so).
 */
const SOURCE = `
#include <stdint.h>
__attribute__((import_module("reed"), import_name("input_read")))
int32_t input_read(char *buf, int32_t len, int32_t offset);
static volatile uint64_t sink;
__attribute__((export_name("spin"))) int32_t spin(void) {
  for (uint32_t i = 0; i < 1000000; i++) sink += i;
  return 0;
}
`;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.each(['none', 'process'] as const)(
  'deferred calls of a tenant without max_concurrent_calls (mode %s)',
  (mode) => {
    it('are bounded: the host does not hold every call a client sends while the slow ones run a slice a turn', async () => {
      const dir = tempDir('reed-adv-deferred-');
      writePlugin(
        join(dir, 'plugins-b'),
        'slow.spin',
        { id: 'slow.spin', entry_point: 'plugin.wasm', sandbox: { mode } },
        { 'plugin.wasm': buildWasiC(SOURCE, { reactor: true }) },
      );
      writeFileSync(
        join(dir, 'reed.toml'),
        'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n' +
          '[tenants.b]\nplugin_dirs = ["plugins-b"]\n',
      );
      const registry = await TenantRegistry.start({
        config: loadHostConfig({ cwd: dir, env: {}, home: dir, overrides: { defaultSearchPaths: false } }),
        forceMode: mode,
        logger: pino({ level: 'silent' }),
        storage: () => new MemoryStorage(),
        audit: false,
      });
      cleanups.push(() => registry.close());
      const b = registry.get('b');
      if (!(b instanceof TenantHost)) throw new Error('tenant b did not start');
      expect(b.spec.quotas?.max_concurrent_calls).toBeUndefined();
      await b.call('slow.spin', 'spin');

      const tokens = TokenStore.open(join(dir, 'tokens'));
      const { token } = tokens.create({ kind: 'tenant', tenant: 'b' });
      const app = buildApi(registry, {
        maxInputBytes: 1024 * 1024,
        logger: { error: () => {} },
        auth: new Authenticator({ tokens }),
      }) as unknown as FastifyInstance;
      cleanups.push(() => app.close());
      await app.ready();
      const sockDir = mkdtempSync(join(tmpdir(), 'reed-adv-sock-'));
      cleanups.push(() => rmSync(sockDir, { recursive: true, force: true }));
      const path = join(sockDir, 'api.sock');
      await app.listen({ path });

      // The host's count of the tenant's calls in flight (admitted, running or deferred), at its highest.
      let peak = 0;
      const watch = setInterval(() => {
        peak = Math.max(peak, b.inFlight);
      }, 1);
      cleanups.push(() => clearInterval(watch));
      const body = 'x'.repeat(16 * 1024);
      const CALLS = 6 * DEFAULT_BODIES_PER_TENANT;
      // Calls pipelined on a few connections (HTTP/1.1 lets a client send its next request before the answer): each
      // connection's requests arrive together, in one read.
      const request = `POST /v1/tenants/b/plugins/slow.spin/call/spin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const PER_CONNECTION = CALLS / 4;
      const answers = await Promise.all(
        Array.from(
          { length: 4 },
          () =>
            new Promise<string[]>((resolve) => {
              const socket = connect(path);
              cleanups.push(() => {
                socket.destroy();
              });
              let answer = '';
              const done = () => resolve(answer.split(/(?=HTTP\/1\.1 )/).filter(Boolean));
              socket.on('error', done);
              socket.on('data', (d: Buffer) => {
                answer += d.toString();
                if ((answer.match(/HTTP\/1\.1 /g) ?? []).length >= PER_CONNECTION) done();
              });
              socket.once('end', done);
              socket.write(request.repeat(PER_CONNECTION));
            }),
        ),
      );
      clearInterval(watch);
      for (const connection of answers) {
        // Each request answered in order, run or refused, until a refusal that closes the connection: the client
        // knows the requests behind it were not run.
        expect(connection.length).toBeGreaterThan(0);
        expect(connection.every((a) => /^HTTP\/1.1 (200|429) /.test(a))).toBe(true);
        if (connection.length < PER_CONNECTION)
          expect(connection.at(-1)).toMatch(/^HTTP\/1.1 429 [\s\S]*connection: close/i);
      }
      expect(answers.flat().some((a) => a.startsWith('HTTP/1.1 200 '))).toBe(true);
      // Before the fix: about every call sent was held at once. Now the calls the tenant has in the host (admitted,
      // deferred or running) are at most the bodies the API holds for it.
      expect(peak).toBeLessThanOrEqual(DEFAULT_BODIES_PER_TENANT);
      expect(peak).toBeGreaterThan(1);
      // And the tenant is served again once its calls are answered.
      await expect(b.call('slow.spin', 'spin')).resolves.toBeDefined();
    }, 120_000);
  },
);
