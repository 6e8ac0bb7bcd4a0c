// Process mode: the runner's seccomp filter (no ptrace, no process_vm_*, no foreign ABI: src/seccomp-filter.ts) is
// installed by bubblewrap before the runner's first instruction, so a WASM plugin's runner loads no native code.
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';

const HELLO = [join(REPO, 'examples/plugins')];
/** Filters this test process already lives under (a CI inside a container has the engine's): runners inherit them. */
const inherited = Number(
  /^Seccomp_filters:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0,
);
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function processHost(runnerCommand?: string[]) {
  const started = await startHost(HELLO, {
    mode: 'process',
    plugins: ['example.hello'],
    ...(runnerCommand === undefined ? {} : { runnerCommand }),
  });
  hosts.push(started.host);
  return started.host;
}

/**
 * The host pid of the runner's node process: the sandbox's init itself (bwrap --as-pid-1), or a child of it (a bwrap
 * reaper as init). Found by its executable, not its name: Node 24 names its main thread "MainThread", so
 * /proc/<pid>/comm is not "node".
 */
function runnerNodePid(host: PluginHost): number {
  const runner = ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox)
    .runner as RunnerProcess;
  const init = runner.initPid as number;
  const children = readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(/\s+/);
  const node = [init, ...children.filter(Boolean).map(Number)].find(
    (pid) => readlinkSync(`/proc/${pid}/exe`) === realpathSync(process.execPath),
  );
  if (node === undefined) throw new Error(`no node process at or under the sandbox's init ${init}`);
  return node;
}

describe('process mode: the runner is under its seccomp filter from its start', () => {
  it('a runner program finds the filter in place at its first line (any runner: bubblewrap installs it)', async () => {
    const host = await processHost([
      process.execPath,
      join(REPO, 'test/fixtures/runners/status-at-start.mjs'),
    ]);
    const atStart = JSON.parse(text((await host.call('example.hello', 'status')).output));
    expect(atStart).toEqual({ seccomp: '2', filters: String(inherited + 1) });
  });

  it('the real runner of a WASM plugin is under exactly that filter and never loads koffi', async () => {
    const host = await processHost();
    expect(text((await host.call('example.hello', 'echo', 'x')).output)).toBe('x');
    const pid = runnerNodePid(host);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    // One filter more than this process has: bubblewrap's (the runner adding its own copy through koffi would make two).
    expect(status).toMatch(new RegExp(`^Seccomp_filters:\\s+${inherited + 1}$`, 'm'));
    expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).not.toMatch(/koffi/);
  });
});
