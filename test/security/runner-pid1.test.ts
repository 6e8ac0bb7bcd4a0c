// Process mode: the runner is its pid namespace's init (bwrap --as-pid-1): bwrap keeps only its monitor outside the
// namespace, with no reaper between it and the runner (one process fewer per runner), and the namespace still ends
// with the runner. Container mode: the runner's command line has the V8 flags of process mode's runners.
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { containerSpec, WARM_ENTRYPOINT } from '../../src/backends/container/container-spec.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import { defaultRunnerCommand } from '../../src/backends/process/runner-command.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import { newSession } from '../../src/backends/shared/session.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { parents } from '../helpers/processes.js';

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

describe('process mode: the runner is pid 1 of its pid namespace', () => {
  it('bwrap (the host’s child) has the runner as its only process: no reaper in between', async () => {
    const { host } = await startHost([join(REPO, 'examples/plugins')], {
      mode: 'process',
      plugins: ['example.hello'],
    });
    hosts.push(host);
    expect(text((await host.call('example.hello', 'echo', 'x')).output)).toBe('x');
    const runner = ((host.sandbox('example.hello') as LazySandbox).inner as SupervisedSandbox)
      .runner as RunnerProcess;
    const bwrap = runner.pid as number;
    const tree = parents();
    const below = [...tree].filter(([, parent]) => parent === bwrap).map(([pid]) => pid);
    expect(below).toEqual([runner.initPid]);
    const init = runner.initPid as number;
    expect(readlinkSync(`/proc/${init}/exe`)).toBe(realpathSync(process.execPath));
    // Its pid inside its own namespace (the last of NSpid, however deep this test itself runs) is 1.
    expect(readFileSync(`/proc/${init}/status`, 'utf8')).toMatch(/^NSpid:(\s+\d+)*\s+1$/m);
  });
});

describe('container mode: the runner has the V8 flags of process mode’s runners', () => {
  const flags = defaultRunnerCommand('/tmp', DEFAULT_LIMITS).filter((a) =>
    /^--(v8-pool-size|max-semi-space-size)=/.test(a),
  );
  const spec = (command?: string[]) =>
    containerSpec(
      {
        pluginId: 'p',
        limits: DEFAULT_LIMITS,
        session: newSession(),
        image: 'reed-plugin-p:x',
        runtime: 'runc',
        network: false,
        labels: {},
        ...(command === undefined ? {} : { command }),
      },
      '/run/reed-rt/abc123',
      ['--socket', '/run/reed/s.sock'],
    );

  it('in a plugin’s container and in a warm one; a custom command is left as it is', () => {
    expect(flags).toEqual(['--v8-pool-size=1', '--max-semi-space-size=1']);
    expect(spec().Entrypoint).toEqual(['/usr/local/bin/node', ...flags, '/opt/reed/dist/runner/main.js']);
    expect(WARM_ENTRYPOINT.slice(0, 3)).toEqual(['/usr/local/bin/node', ...flags]);
    expect(spec(['/usr/local/bin/node', '/opt/x.mjs']).Entrypoint).toEqual([
      '/usr/local/bin/node',
      '/opt/x.mjs',
    ]);
  });
});
