// Scale to zero in process mode (issue 16, part 2): the runner is stopped after idle_timeout (deactivate first) and
// started again on the next call (test/helpers/idle.ts). Runs from dist/ (npm run build).
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { poolsOf } from '../../src/backends/pool/warm-pool.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { IDLE_PLUGIN, idleSuite, supervisorOf, until } from '../helpers/idle.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { alive } from '../helpers/processes.js';

describe('scale to zero, process mode', () => {
  idleSuite(
    'process',
    {
      // No runner process, and no runner directory (socket, work directory) of this host's under runtime_dir/sandboxes.
      async nothingRuns(host, sandbox) {
        const runner = supervisorOf(sandbox)?.runner;
        if (runner?.pid !== undefined) {
          const pid = runner.pid;
          // Gone from /proc, and its exit seen by the host (Node learns of it a moment later: the order is not fixed).
          await until(() => !alive(pid) && !runner.alive, `runner ${pid} to be gone`);
        }
        expect(runner === undefined || !runner.alive).toBe(true);
        const dir = join(host.config.runtimeDir, 'sandboxes');
        const left = (() => {
          try {
            return readdirSync(dir).filter((name) => name.startsWith(`${host.session.id.slice(0, 8)}-`));
          } catch {
            return [];
          }
        })();
        expect(left).toEqual([]);
      },
    },
    60_000,
  );
});

describe("a wake slower than a call's deadline (process mode)", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('the call waits at most its deadline (call_timeout, details.waking); the wake goes on and answers the next', async () => {
    // test/fixtures/runners/hold.mjs holds a runner back while <gate>/hold exists.
    const gate = tempDir('reed-idle-hold-');
    const { host } = await startHost([join(REPO, 'test/fixtures/idle')], {
      mode: 'process',
      plugins: [IDLE_PLUGIN],
      supervision: { healthIntervalMs: 0 },
      runnerCommand: [process.execPath, join(REPO, 'test/fixtures/runners/hold.mjs'), gate],
    });
    cleanups.push(() => host.close());
    await until(() => host.pluginStatus(IDLE_PLUGIN).state === 'idle', 'the plugin to idle');
    writeFileSync(join(gate, 'hold'), '');
    const short = host.call(IDLE_PLUGIN, 'echo', 'short', { timeoutMs: 300 });
    const patient = host.call(IDLE_PLUGIN, 'echo', 'patient', { timeoutMs: 120_000 });
    await expect(short).rejects.toMatchObject({ code: 'call_timeout', details: { waking: true } });
    expect(host.pluginStatus(IDLE_PLUGIN).state).toBe('starting');
    rmSync(join(gate, 'hold'));
    expect(text((await patient).output)).toBe('patient');
    // The expired wait killed nothing: no crash, the runner that woke is the one that answered.
    expect(host.pluginStatus(IDLE_PLUGIN).crashes).toBe(0);
  });
});

describe('a wake from the warm pool (process mode)', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('the runner that answers the waking call is the one the pool held ready', async () => {
    const { host } = await startHost([join(REPO, 'test/fixtures/idle')], {
      mode: 'process',
      plugins: [IDLE_PLUGIN],
      supervision: { healthIntervalMs: 0 },
      reedToml: '[sandbox.pool]\nprocess = 1\n',
    });
    cleanups.push(() => host.close());
    await until(() => host.pluginStatus(IDLE_PLUGIN).state === 'idle', 'the plugin to idle');
    const [pool] = poolsOf(host.session.id);
    if (pool === undefined) throw new Error('no warm pool');
    await pool.filled();
    const warm = (pool.idleRunners() as unknown as RunnerProcess[]).map((r) => r.pid);
    expect(warm).toHaveLength(1);
    expect(text((await host.call(IDLE_PLUGIN, 'hits')).output)).toBe('1');
    expect(supervisorOf(host.sandbox(IDLE_PLUGIN))?.runner?.pid).toBe(warm[0]);
  });
});
