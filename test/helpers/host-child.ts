import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import pino from 'pino';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from './cli.js';

/**
 * A host run in a child process from test/fixtures/hosts/<name>.mjs, so that a test can kill it with SIGKILL. The
 * fixture prints one line `ready [words...]` once its plugins are up; `ready` holds those words.
 */
export async function spawnHostFixture(
  name: string,
  args: string[],
): Promise<{ child: ChildProcess; ready: string[] }> {
  const child = spawn(process.execPath, [join(REPO, 'test/fixtures/hosts', `${name}.mjs`), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /ready([^\n]*)\n/.exec(out);
      if (line) resolve((line[1] as string).split(' ').filter((w) => w !== ''));
    });
    child.once('exit', () => reject(new Error(`host fixture ${name} exited early: ${out}`)));
  });
  return { child, ready };
}

/** Kills a host child with SIGKILL (no clean-up of its own can run) and waits until it has exited. */
export async function killHost(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/**
 * Starts a host with no plugins on `runtimeDir`: starting is when a host sweeps what dead hosts left there (runner
 * directories, cgroups, containers). The caller closes it.
 */
export async function startSweepingHost(runtimeDir: string): Promise<PluginHost> {
  const config = loadHostConfig({
    cwd: runtimeDir,
    env: {},
    home: runtimeDir,
    overrides: { pluginDirs: [], defaultSearchPaths: false },
  });
  config.runtimeDir = runtimeDir;
  return PluginHost.start({ config, logger: pino({ level: 'silent' }) });
}
