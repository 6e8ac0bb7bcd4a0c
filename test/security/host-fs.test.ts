import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RunnerEndpoint } from '../../src/backends/shared/runner-endpoint.js';
import { newSession, OWNER_FILE, sweepOrphans } from '../../src/backends/shared/session.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { hostileRunnerImage, NODE_IN_IMAGE, RUNNERS_IN_IMAGE } from '../helpers/hostile-image.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Class 1 and 4 of issue 10: the host, as root, deletes and writes in directories a plugin could write. A
 * delete must never follow a link a plugin placed, never leave the directory it was given, and survive any
 * depth; the host must keep starting whatever a dead host left behind.
 */
const RUNNERS = join(REPO, 'test/fixtures/runners');
const MiB = 1024 * 1024;
const docker = new Docker();
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

async function makeDeepChain(dir: string, depth: number): Promise<void> {
  const script = `const fs=require('fs');process.chdir(process.argv[1]);for(let i=0;i<${depth};i++){fs.mkdirSync('dd');process.chdir('dd')}fs.writeFileSync('bottom','x')`;
  const child = spawn(process.execPath, ['-e', script, dir], { stdio: 'inherit' });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  expect(code).toBe(0);
}

/** A sandbox directory left by a host that is no longer alive (pid 2^22 + 1 exists nowhere). */
function deadSandbox(runtimeDir: string, name: string): string {
  const dir = join(runtimeDir, 'sandboxes', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify({ ...newSession(), pid: 4_194_305, pluginId: 'p' }));
  return dir;
}

describe('class 4: a directory deeper than PATH_MAX', () => {
  it('the start-up sweep removes a dead sandbox holding a chain past PATH_MAX, and the rest of the sweep goes on', async () => {
    const runtimeDir = tempDir();
    await makeDeepChain(deadSandbox(runtimeDir, 'deep'), 3_000); // 3,000 x "dd/" = 9,000 bytes > PATH_MAX
    deadSandbox(runtimeDir, 'plain');
    const result = await sweepOrphans(runtimeDir);
    expect(result.dirs).toBe(2);
    expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
  });
});

/** `count` files named f0... in `dir`. */
function files(dir: string, count: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `f${i}`), 'data');
}

async function startSwapper(dir: string, victim: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(RUNNERS, 'swap-dir.mjs'), dir, victim], { stdio: 'ignore' });
  children.push(child);
  while (!existsSync(join(dir, 'swapper.ready'))) await new Promise((r) => setTimeout(r, 5));
  return child;
}

describe('class 1: a delete races a directory/symlink swap', () => {
  it('the sweep never deletes a file outside the sandbox while a process keeps swapping a directory for a symlink to it', async () => {
    const victim = join(tempDir(), 'victim');
    files(victim, 100);
    for (let round = 0; round < 25; round++) {
      const runtimeDir = tempDir();
      const sandbox = deadSandbox(runtimeDir, 'raced');
      files(join(sandbox, 'x'), 100);
      const swapper = await startSwapper(sandbox, victim);
      await sweepOrphans(runtimeDir); // never throws, whatever the swapper does
      swapper.kill('SIGKILL');
      await new Promise((r) => swapper.once('exit', r));
      expect(readdirSync(victim).length, `round ${round}`).toBe(100);
      // Once the swapping stops, the next sweep removes what the race left.
      await sweepOrphans(runtimeDir);
      expect(readdirSync(join(runtimeDir, 'sandboxes'))).toEqual([]);
    }
  });
});

describe('class 4: a sandbox that stops with a chain past PATH_MAX in its directory', () => {
  it('RunnerEndpoint.close() resolves and removes the directory', async () => {
    const endpoint = new RunnerEndpoint(
      {
        pluginId: 'p',
        host: {} as HostApi,
        limits: DEFAULT_LIMITS,
        logger: pino({ level: 'silent' }),
        runtimeDir: tempDir(),
        session: newSession(),
        startTimeoutMs: 1_000,
      },
      REPO,
    );
    await makeDeepChain(endpoint.dir, 3_000);
    await expect(endpoint.close()).resolves.toBeUndefined();
    expect(existsSync(endpoint.dir)).toBe(false);
  });
});

/** Bytes of regular files under `dir`, walked without following links. */
function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) total += bytesUnder(p);
    else if (entry.isFile()) total += lstatSync(p).size;
  }
  return total;
}

describe.each(['runc', 'runsc'])(
  'container mode (%s): what a runner writes stays in its own memory',
  (runtime) => {
    let image: string;
    beforeAll(async () => {
      image = await hostileRunnerImage(docker, 'reed-test-host-fs:latest');
    }, 300_000);

    it('class 11 and 1: nothing lands on the host disk (not in /run/reed, not in the container layer), /tmp and /dev/shm hold at most tmpfs_mb, and no link placed for the host survives to be followed', async () => {
      const victim = join(tempDir(), 'victim');
      files(victim, 10);
      const started = await startHost([join(REPO, 'examples/plugins')], {
        mode: 'container',
        plugins: ['example.hello'],
        reedToml: `[signatures]\nrequire = "none"\n[sandbox]\nruntime = "${runtime}"\n[limits]\ntmpfs_mb = 16\ncall_timeout_ms = 120000\n`,
        supervision: { startTimeoutMs: 30_000 },
        runnerImage: image,
        runnerCommand: [NODE_IN_IMAGE, `${RUNNERS_IN_IMAGE}/fill-disk.mjs`],
        docker,
      });
      const { host, dir } = started;
      try {
        const answer = await host.call('example.hello', 'attack', JSON.stringify({ mib: 48, victim }));
        const { written, links } = JSON.parse(text(answer.output)) as {
          written: Record<string, number>;
          links: string[];
        };
        expect(written['/run/reed']).toBe(0);
        expect(links).toEqual([]);
        expect(bytesUnder(join(dir, 'runtime', 'sandboxes'))).toBeLessThan(64 * 1024);
        for (const place of ['/', '/opt', '/home', '/var/tmp']) expect(written[place], place).toBe(0);
        for (const place of ['/tmp', '/dev/shm']) expect(written[place], place).toBeLessThanOrEqual(16 * MiB);
        const [container] = await docker.listContainers({
          all: true,
          size: true,
          filters: { label: [`reed.host.session=${host.session.id}`] },
        });
        expect((container as { SizeRw?: number } | undefined)?.SizeRw ?? 0).toBeLessThan(1 * MiB);
      } finally {
        await host.close();
      }
      expect(readdirSync(victim).length).toBe(10);
      expect(readdirSync(join(dir, 'runtime', 'sandboxes'))).toEqual([]);
    }, 300_000);
  },
);
