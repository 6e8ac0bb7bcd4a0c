// A process-mode runner busy with a long call (found by the session-15 review): a WASM plugin without host calls runs
// its call on the runner's main thread, which answers a Ping only once the call ends. The sandbox's health (one ping,
// 1 s) then said "no answer", and the late Pong ended the link as a protocol violation (test/unit/runner-link.test.ts
// has that part). Now a runner with calls in flight that has not answered is reported healthy and busy; the call's
// own deadline is what ends a stuck one. Runs from dist/ (npm run build).
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const PLUGIN = 'health.busy';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** example.hello under another id, its `spin` (a loop until its fuel ends) given more fuel than 3 s can burn. */
function busyPlugin(): string {
  const root = tempDir('reed-health-busy-');
  const dir = join(root, 'busy');
  mkdirSync(dir);
  const hello = join(REPO, 'examples/plugins/hello');
  copyFileSync(join(hello, 'plugin.wasm'), join(dir, 'plugin.wasm'));
  const toml = readFileSync(join(hello, 'plugin.toml'), 'utf8').replace(
    'id = "example.hello"',
    `id = "${PLUGIN}"`,
  );
  writeFileSync(
    join(dir, 'plugin.toml'),
    `${toml}\n[limits]\nfuel_per_call = 100000000000\ncall_timeout_ms = 3000\n`,
  );
  return root;
}

describe('health of a process-mode runner busy with a call', () => {
  it('is ok and says busy while the call runs; the call ends at its deadline', async () => {
    const { host } = await startHost([busyPlugin()], {
      mode: 'process',
      plugins: [PLUGIN],
      supervision: { healthIntervalMs: 0 },
    });
    cleanups.push(() => host.close());
    const idle = await host.sandbox(PLUGIN).health();
    expect(idle).toEqual({ ok: true });
    // The Call goes out before the Ping on the same socket: the runner is in the spin when the Ping arrives.
    const call = host.call(PLUGIN, 'spin').catch((error: unknown) => error);
    const busy = await host.sandbox(PLUGIN).health();
    expect(busy).toEqual({ ok: true, detail: expect.stringContaining('busy with 1 call(s)') });
    expect(await call).toMatchObject({ code: 'call_timeout' });
  });
});
