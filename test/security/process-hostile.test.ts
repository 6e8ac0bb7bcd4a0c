import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { libcHandle } from '../../src/runtime/libc.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { TRACE_DENIED } from '../helpers/processes.js';

const RUNNERS = join(REPO, 'test/fixtures/runners');
const NATIVE = join(REPO, 'test/fixtures/native-process');
const FAST = {
  startTimeoutMs: 3_000,
  graceMs: 500,
  restartBaseMs: 20,
  restartMaxMs: 200,
  maxCrashes: 3,
  crashWindowMs: 60_000,
};
const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

async function processHost(
  dirs: string[],
  options: { runner?: string; reedToml?: string; plugins?: string[] } = {},
) {
  const started = await startHost(dirs, {
    mode: 'process',
    reedToml: `[signatures]\nrequire = "none"\n[policy.limits]\nfuel_per_call = 100000000000\n${options.reedToml ?? ''}`,
    ...(options.plugins ? { plugins: options.plugins } : {}),
    supervision: FAST,
    ...(options.runner ? { runnerCommand: [process.execPath, join(RUNNERS, options.runner)] } : {}),
  });
  hosts.push(started.host);
  return started;
}

const runnerOf = (host: PluginHost, id: string) =>
  ((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner;
/** Live processes in a process group (zombies are dead, only not yet reaped by init). */
const pidsInGroup = (pgid: number) =>
  execFileSync('ps', ['-e', '-o', 'pgid=,stat='], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([g, stat]) => Number(g) === pgid && !stat?.startsWith('Z')).length;

describe('hostile runners: every frame is hostile input', () => {
  const HELLO = [join(REPO, 'examples/plugins')];

  it.each([
    ['no-handshake.mjs', 'sandbox_start_failed'],
    ['wrong-secret.mjs', 'handshake_failed'],
  ])('%s never becomes ready (%s), and leaves nothing behind', async (runner, code) => {
    const { host, dir } = await processHost(HELLO, { runner, plugins: ['example.hello'] });
    expect(host.status()[0]).toMatchObject({ state: 'failed', error: { code } });
    expect(readdirSync(join(dir, 'runtime', 'sandboxes'))).toEqual([]);
  });

  it.each([
    ['huge-length.mjs', 'protocol_violation'],
    ['malformed.mjs', 'protocol_violation'],
    ['unknown-id.mjs', 'protocol_violation'],
    ['forged-host-call.mjs', 'protocol_violation'],
    ['forged-lease.mjs', 'protocol_violation'],
    ['exit-mid-call.mjs', 'sandbox_crashed'],
  ])('%s: the call fails with %s, the sandbox restarts, and the next call works', async (runner, code) => {
    const { host } = await processHost(HELLO, { runner, plugins: ['example.hello'] });
    expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
    await expect(host.call('example.hello', 'attack')).rejects.toMatchObject({ code });
    expect(text((await host.call('example.hello', 'ok')).output)).toBe('ok');
  });

  it('refuses a second connection replaying the secret, and keeps serving the first', async () => {
    const { host } = await processHost(HELLO, {
      runner: 'second-connection.mjs',
      plugins: ['example.hello'],
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(text((await host.call('example.hello', 'attack')).output)).toBe('second connection closed: true');
  });

  it('replaces a runner that stops answering health pings', async () => {
    const started = await startHost(HELLO, {
      mode: 'process',
      plugins: ['example.hello'],
      supervision: { ...FAST, healthIntervalMs: 100, healthTimeoutMs: 100 },
      runnerCommand: [process.execPath, join(RUNNERS, 'deaf.mjs')],
    });
    hosts.push(started.host);
    const first = runnerOf(started.host, 'example.hello')?.pid;
    await new Promise((r) => setTimeout(r, 600));
    expect(runnerOf(started.host, 'example.hello')?.pid).not.toBe(first);
    expect(started.logs.some((l) => /health ping/.test(String(l.why ?? '')))).toBe(true);
  });

  it('survives a flood of frames, keeping at most its log rate', async () => {
    const { host, logs } = await processHost(HELLO, { runner: 'flood.mjs', plugins: ['example.hello'] });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const before = logs.length;
    const started = performance.now();
    expect(text((await host.call('example.hello', 'attack')).output)).toBe('after the flood');
    const seconds = (performance.now() - started) / 1000;
    clearInterval(timer);
    // 100 lines a second (limits.log_lines_per_second): a flood that spans k one-second windows may have 100 in each,
    // so the bound follows the time it took (on a loaded machine the 50,000 frames take over a second), never the
    // 50,000 the runner sent.
    expect(logs.slice(before).filter((l: LogLine) => l.msg.startsWith('flood')).length).toBeLessThanOrEqual(
      100 * (Math.ceil(seconds) + 1),
    );
    expect(ticks).toBeGreaterThan(0);
  });
});

describe('hostile native plugins in process mode', () => {
  it('a segfault is a sandbox_crashed for the caller; the runner restarts', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.segfault'] });
    await expect(host.call('proc.segfault', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
    expect(text((await host.call('proc.segfault', 'ok')).output)).toBe('ok');
  });

  it('exit() in the plugin is a sandbox_crashed; the host goes on', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.exit'] });
    await expect(host.call('proc.exit', 'attack')).rejects.toMatchObject({
      code: 'sandbox_crashed',
      details: { exitCode: 3 },
    });
    expect(text((await host.call('proc.exit', 'ok')).output)).toBe('ok');
  });

  it('marks a plugin failed after repeated crashes (the breaker)', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.segfault'] });
    for (let i = 0; i < 3; i++) {
      await expect(host.call('proc.segfault', 'attack')).rejects.toMatchObject({ code: 'sandbox_crashed' });
      await new Promise((r) => setTimeout(r, 300));
    }
    await expect(host.call('proc.segfault', 'ok')).rejects.toMatchObject({
      code: 'plugin_failed',
      details: { causeCode: 'sandbox_crashed' },
    });
  });

  it('a call that spins forever ends at its deadline with call_timeout; the runner is replaced', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.spin'] });
    const first = runnerOf(host, 'proc.spin')?.pid;
    const started = Date.now();
    await expect(host.call('proc.spin', 'attack')).rejects.toMatchObject({ code: 'call_timeout' });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(text((await host.call('proc.spin', 'ok')).output)).toBe('ok');
    expect(runnerOf(host, 'proc.spin')?.pid).not.toBe(first);
  });

  it('cannot trace or read another process, not even its own child, from any thread (seccomp)', async () => {
    // A session keyring of the host's own, as a service under systemd has: runners kept it, and every runner of
    // every tenant could read and add keys there (the seventh review). Without one they are refused anyway.
    joinSessionKeyring();
    const { host } = await processHost([NATIVE], { plugins: ['proc.trace'] });
    const report = JSON.parse(text((await host.call('proc.trace', 'attack')).output)) as Record<
      string,
      number
    >;
    // EPERM for each: plain Unix rules would allow the first three (same user, its own child, itself).
    expect(report).toEqual(TRACE_DENIED);
  });

  it('children a plugin forks die with its process group', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.fork'] });
    const pgid = runnerOf(host, 'proc.fork')?.pid as number;
    await expect(host.call('proc.fork', 'attack')).rejects.toMatchObject({ code: 'call_timeout' });
    await new Promise((r) => setTimeout(r, 300));
    expect(pidsInGroup(pgid)).toBe(0);
  });

  it('a runner ignoring SIGTERM is killed on close, and nothing is left', async () => {
    const { host, dir } = await processHost([NATIVE], { plugins: ['proc.ignore-term'] });
    await host.call('proc.ignore-term', 'attack');
    const pgid = runnerOf(host, 'proc.ignore-term')?.pid as number;
    await host.close();
    expect(pidsInGroup(pgid)).toBe(0);
    expect(readdirSync(join(dir, 'runtime', 'sandboxes'))).toEqual([]);
  });

  it('a memory bomb is reported as the memory limit', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.membomb'] });
    await expect(host.call('proc.membomb', 'attack')).rejects.toMatchObject({ code: 'memory_limit' });
  });

  it('a constructor with side effects runs in the runner, not the host, and cannot kill the host', async () => {
    const { host } = await processHost([NATIVE], { plugins: ['proc.constructor'] });
    // Written in the runner's working directory: its private /tmp, seen from here through its sandbox's root.
    const init = (runnerOf(host, 'proc.constructor') as RunnerProcess).initPid as number;
    expect(existsSync(`/proc/${init}/root/tmp/constructor-ran`)).toBe(true);
    expect(existsSync(join(process.cwd(), 'constructor-ran'))).toBe(false);
    expect(text((await host.call('proc.constructor', 'ok')).output)).toBe('ok');
  });
});

/** Gives this process a new anonymous session keyring (keyctl KEYCTL_JOIN_SESSION_KEYRING, NULL). */
function joinSessionKeyring(): void {
  const keyctl = { x64: 250, arm64: 219 }[process.arch as 'x64' | 'arm64'];
  const join = libcHandle().func('long syscall(long nr, long op, const char *name)');
  expect(join(keyctl, 1, null)).toBeGreaterThan(0);
}

describe('the runner process', () => {
  it('runs with a scrubbed environment, its own process group and, under root, an unprivileged uid', async () => {
    const { host } = await processHost([join(REPO, 'examples/plugins')], { plugins: ['example.hello'] });
    const pid = runnerOf(host, 'example.hello')?.pid as number;
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
    // REED_SECRET_FD names the pipe the secret came on (read and closed at start), never the secret itself;
    // REED_SECCOMP says bubblewrap installed the runner's seccomp filter (src/seccomp-filter.ts).
    expect(env.map((e) => e.split('=')[0]).sort()).toEqual([
      'LANG',
      'PATH',
      'REED_SECCOMP',
      'REED_SECRET_FD',
    ]);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).not.toMatch(/[0-9a-f]{64}/); // the secret is never on the command line
    expect(execFileSync('ps', ['-o', 'pgid=', '-p', String(pid)], { encoding: 'utf8' }).trim()).toBe(
      String(pid),
    );
    if (process.getuid?.() === 0) {
      const uid = /Uid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      // One of [sandbox] runner_uids (default 600000-699999), never nobody (process-isolation.test.ts has more).
      expect(Number(uid)).toBeGreaterThanOrEqual(600_000);
      expect(Number(uid)).toBeLessThanOrEqual(699_999);
    }
    expect(await host.sandbox('example.hello').health()).toEqual({ ok: true });
  });
});
