// Issue 10, classes 2, 8 and 10: process mode isolated like a container (bubblewrap), tried by a hostile native
// plugin (test/fixtures/native-process/isolation) beside another plugin. The probe answers with errno values.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import koffi from 'koffi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { LmdbStorage } from '../../src/host/lmdb-storage.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { startSweepingHost } from '../helpers/host-child.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { runnerNodePid } from '../helpers/processes.js';

const FIXTURE = join(REPO, 'test/fixtures/native-process/isolation');
const FAST = { startTimeoutMs: 10_000, graceMs: 500, restartBaseMs: 20, restartMaxMs: 200 };
const EPERM = 1;
const ENOENT = 2;
const ESRCH = 3;
const ENOSPC = 28;

/** A search path with the probe as `proc.isolation` and copies of it under other ids. */
function probePlugins(...others: string[]): string {
  const root = tempDir('reed-isolation-');
  for (const id of ['proc.isolation', ...others]) {
    const dir = join(root, id);
    cpSync(FIXTURE, dir, { recursive: true });
    const toml = readFileSync(join(dir, 'plugin.toml'), 'utf8').replace('"proc.isolation"', `"${id}"`);
    writeFileSync(join(dir, 'plugin.toml'), toml);
  }
  return root;
}

const probe = async (host: PluginHost, id: string, cmd: string) =>
  text((await host.call(id, 'probe', cmd)).output);
const runnerOf = (host: PluginHost, id: string) =>
  ((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner;

/** Live (not zombie) processes matching `test`. */
function livePids(test: (pid: string) => boolean): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return !/State:\s+Z/.test(readFileSync(`/proc/${p}/status`, 'utf8')) && test(p);
      } catch {
        return false;
      }
    })
    .map(Number);
}
const named = (comm: string) => livePids((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm);
const ofUid = (uid: number) =>
  livePids((p) => new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(readFileSync(`/proc/${p}/status`, 'utf8')));
/** Kills what a failing run left, so one failure does not leak processes into the machine. */
const reap = (pids: number[]) => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
};
async function until(check: () => boolean, ms = 5_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (check()) return true;
  return check();
}
const orphanName = () => `orph${process.pid % 1000}${Math.floor(Math.random() * 1e6)}`;

describe('process mode: a hostile native plugin beside another plugin (issue 10, classes 2 and 10)', () => {
  let host: PluginHost;
  let root: string;
  let dir: string;
  /** Looked up each time: an attack that worked would have replaced the victim's runner. */
  const victim = () => runnerNodePid(runnerOf(host, 'proc.victim')?.pid as number);
  let tcp: Server;
  let port: number;

  beforeAll(async () => {
    root = probePlugins('proc.victim');
    const started = await startHost([root], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    host = started.host;
    dir = started.dir;
    expect(host.status().map((s) => [s.id, s.state])).toEqual([
      ['proc.isolation', 'ready'],
      ['proc.victim', 'ready'],
    ]);
    tcp = createServer((s) => s.end('hello'));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    port = (tcp.address() as { port: number }).port;
  });
  afterAll(async () => {
    tcp?.close();
    await host?.close();
  });

  const victimAlive = async () => expect(await probe(host, 'proc.victim', 'whoami')).toMatch(/^\d+ \d+ \d+$/);

  it('cannot signal the other plugin\u2019s runner by its pid', async () => {
    expect(Number(await probe(host, 'proc.isolation', `signal ${victim()}`))).not.toBe(0);
    await victimAlive();
  });

  it('cannot signal every runner with kill(-1)', async () => {
    await probe(host, 'proc.isolation', 'killall');
    await victimAlive();
    expect(host.status().find((s) => s.id === 'proc.victim')?.state).toBe('ready');
  });

  it('cannot take the other runner\u2019s socket (pidfd_getfd) or trace it', async () => {
    const [openErrno, taken] = (await probe(host, 'proc.isolation', `getfd ${victim()}`)).split(' ');
    expect(taken).toBe('0');
    expect([ESRCH, EPERM]).toContain(Number(openErrno));
    expect(Number(await probe(host, 'proc.isolation', `ptrace ${victim()}`))).not.toBe(0);
  });

  it('cannot read the other runner\u2019s memory or environment', async () => {
    for (const f of ['mem', 'environ', 'cmdline', 'maps'])
      expect(Number(await probe(host, 'proc.isolation', `open /proc/${victim()}/${f}`))).not.toBe(0);
  });

  it('sees no plugin directory, no host file, no runtime or data directory', async () => {
    for (const path of [
      join(root, 'proc.victim', 'plugin.toml'),
      join(root, 'proc.isolation', 'plugin.toml'),
      '/etc/passwd',
      '/etc/hostname',
      join(dir, 'reed.toml'),
    ])
      expect([path, Number(await probe(host, 'proc.isolation', `read ${path}`))]).toEqual([path, ENOENT]);
    for (const path of [join(dir, 'runtime'), join(dir, 'runtime', 'sandboxes'), '/root', '/home', '/var'])
      expect([path, Number(await probe(host, 'proc.isolation', `list ${path}`))]).toEqual([path, ENOENT]);
  });

  it('cannot connect to the other runner\u2019s socket', async () => {
    const socket = join(runnerOf(host, 'proc.victim')?.dir as string, 's.sock');
    expect(Number(await probe(host, 'proc.isolation', `connect ${socket}`))).not.toBe(0);
  });

  it('cannot reach a TCP service on the host\u2019s 127.0.0.1 (no network granted)', async () => {
    expect(Number(await probe(host, 'proc.isolation', `tcp ${port}`))).not.toBe(0);
  });

  it('has a private /tmp of tmpfs_mb: writes beyond it fail, and the other plugin does not see its files', async () => {
    expect(Number(await probe(host, 'proc.isolation', `fill ${5 * 1024 * 1024}`))).toBe(ENOSPC);
    expect(Number(await probe(host, 'proc.isolation', `fill ${1024 * 1024}`))).toBe(0);
    const name = `mark-${Date.now()}`;
    expect(Number(await probe(host, 'proc.isolation', `put ${name}`))).toBe(0);
    expect(Number(await probe(host, 'proc.isolation', `get ${name}`))).toBe(0);
    expect(Number(await probe(host, 'proc.victim', `get ${name}`))).toBe(ENOENT);
    expect(readdirSync('/tmp')).not.toContain(name);
  });

  it('each runner has its own uid, in the configured range, never 65534', async () => {
    const uids = await Promise.all(
      ['proc.isolation', 'proc.victim'].map(async (id) =>
        Number((await probe(host, id, 'whoami')).split(' ')[0]),
      ),
    );
    expect(uids[0]).not.toBe(uids[1]);
    if (process.getuid?.() === 0) {
      for (const uid of uids) {
        expect(uid).not.toBe(65_534);
        expect(uid).toBeGreaterThanOrEqual(600_000);
        expect(uid).toBeLessThanOrEqual(699_999);
      }
    }
  });
});

describe('nothing survives the sandbox (issue 10, class 8)', () => {
  it('a setsid+fork grandchild dies when its sandbox stops', async () => {
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    const name = orphanName();
    try {
      expect(await probe(host, 'proc.isolation', `orphan ${name}`)).toBe('0');
      expect(await until(() => named(name).length === 1)).toBe(true);
      await host.close();
      expect(await until(() => named(name).length === 0)).toBe(true);
    } finally {
      reap(named(name));
      await host.close();
    }
  });

  it('a setsid+fork grandchild dies with a host killed by SIGKILL, and so does every process of its uid', async () => {
    const runtimeDir = tempDir('reed-isolation-death-');
    const name = orphanName();
    const child: ChildProcess = spawn(
      process.execPath,
      [join(REPO, 'test/fixtures/hosts/isolation-host.mjs'), runtimeDir, probePlugins(), name],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const [, uid] = await new Promise<number[]>((resolve, reject) => {
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const line = /ready (\d+) (\d+)\n/.exec(out);
          if (line) resolve([Number(line[1]), Number(line[2])]);
        });
        child.once('exit', () => reject(new Error(`host exited early: ${out}`)));
      });
      expect(await until(() => named(name).length === 1)).toBe(true);
      child.kill('SIGKILL');
      expect(await until(() => named(name).length === 0)).toBe(true);
      if (process.getuid?.() === 0 && uid !== 65_534)
        expect(await until(() => ofUid(uid as number).length === 0)).toBe(true);
    } finally {
      child.kill('SIGKILL');
      reap(named(name));
    }
  });

  it('the next host kills what is left in a cgroup of a dead host, and removes the cgroup', async () => {
    expect(process.getuid?.()).toBe(0); // cgroups need root; this machine runs the suite as root
    const { cgroupName, RunnerCgroup } = await import('../../src/backends/process/cgroup.js');
    // A "host" that has exited: its pid and start time identify it, and it is not alive any more.
    const dead = spawn(process.execPath, ['-e', '0']);
    const deadPid = dead.pid as number;
    const deadStart = readFileSync(`/proc/${deadPid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19] ?? '';
    await new Promise((r) => dead.once('exit', r));
    const session = { id: 'deadbeefdeadbeef', pid: deadPid, start: deadStart };
    const name = cgroupName(session, 'orphan');
    const cgroup = RunnerCgroup.create(name, {
      memoryBytes: 256 << 20,
      pids: 16,
      cpus: 1,
    });
    // The machine's version: v1 the memory, pids and cpu hierarchies, each swept; v2 (scripts/cgroup2-vm.sh) its
    // one tree's reed/.
    if (existsSync('/sys/fs/cgroup/cgroup.controllers'))
      expect(cgroup?.dirs).toEqual([join('/sys/fs/cgroup/reed', name)]);
    else expect(cgroup?.dirs.map((d) => d.split('/')[4])).toEqual(['memory', 'pids', 'cpu']);
    const left = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
    left.unref();
    await cgroup?.add(left.pid as number);
    try {
      const runtimeDir = tempDir();
      const next = await startSweepingHost(runtimeDir);
      await next.close();
      expect(await until(() => livePids((p) => Number(p) === left.pid).length === 0)).toBe(true);
      expect(cgroup?.dirs.filter((d) => existsSync(d))).toEqual([]);
    } finally {
      reap([left.pid as number]);
      await cgroup?.remove();
    }
  });
});

describe('runner uids', () => {
  it('two host processes on one machine never lease the same uid', async () => {
    const lease = (range: string) =>
      new Promise<number[]>((resolve, reject) => {
        const script = `import { leaseUid, parseUidRange } from ${JSON.stringify(join(REPO, 'dist/src/backends/shared/uid-pool.js'))};
          const range = parseUidRange(${JSON.stringify(range)});
          const uids = [];
          for (let i = 0; i < 20; i++) uids.push((await leaseUid(range, 'p')).uid);
          process.stdout.write(JSON.stringify(uids) + '\\n');
          process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.endsWith('\n')) resolve(Object.assign(JSON.parse(out) as number[], { child }));
        });
        child.once('exit', (code) => reject(new Error(`leasing process exited with ${code}: ${out}`)));
        children.push(child);
      });
    const children: ChildProcess[] = [];
    try {
      // 40 uids for 2 x 20 leases: they fit only if no uid is given twice.
      const [a, b] = await Promise.all([lease('710000-710039'), lease('710000-710039')]);
      const all = [...(a as number[]), ...(b as number[])];
      expect(new Set(all).size).toBe(40);
      expect(all.every((u) => u >= 710_000 && u <= 710_039)).toBe(true);
    } finally {
      for (const c of children) c.kill('SIGKILL');
    }
  });

  const config = (toml: string) => {
    const dir = tempDir();
    writeFileSync(join(dir, 'reed.toml'), toml);
    return () => loadHostConfig({ cwd: dir, env: {}, home: dir });
  };

  it('reads [sandbox] runner_uids, and refuses a range with 65534 (the container user), 0, or reversed', () => {
    if (process.getuid?.() === 0)
      expect(config('[sandbox]\nrunner_uids = "700000-700099"\n')().runnerUids).toEqual({
        start: 700_000,
        end: 700_099,
      });
    for (const range of ['60000-70000', '0-10', '700099-700000', 'many'])
      expect(config(`[sandbox]\nrunner_uids = "${range}"\n`)).toThrow(
        expect.objectContaining({ code: 'config_invalid', field: 'sandbox.runner_uids' }),
      );
  });

  it('refuses the old runner_uid (one uid shared by every runner), naming runner_uids', () => {
    expect(config('[sandbox]\nrunner_uid = 1000\n')).toThrow(
      expect.objectContaining({ code: 'config_invalid', field: 'sandbox.runner_uid' }),
    );
  });
});

describe('bubblewrap is required', () => {
  it('without it, process mode fails with sandbox_unavailable and never runs unconfined', async () => {
    process.env.REED_BWRAP = join(tempDir(), 'no-bwrap-here');
    try {
      const { host } = await startHost([probePlugins()], {
        mode: 'process',
        reedToml: '[signatures]\nrequire = "none"\n',
        supervision: FAST,
      });
      expect(host.status()[0]).toMatchObject({ state: 'failed', error: { code: 'sandbox_unavailable' } });
      await host.close();
    } finally {
      delete process.env.REED_BWRAP;
    }
  });
});

describe('the runner\u2019s cgroup from bwrap\u2019s start (cgroup v1: the starter joins it, then becomes the runner\u2019s uid)', () => {
  it('bwrap and the runner are in every hierarchy of the runner\u2019s cgroup, as the runner\u2019s uid, with no groups or capabilities', async () => {
    expect(process.getuid?.()).toBe(0); // cgroups and runner uids need root; this machine runs the suite as root
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    try {
      const runner = runnerOf(host, 'proc.isolation') as RunnerProcess;
      const dirs = runner.cgroup?.dirs ?? [];
      expect(dirs.length).toBeGreaterThan(0);
      const bwrap = runner.pid as number;
      const node = runnerNodePid(bwrap);
      for (const pid of [bwrap, node]) {
        for (const dir of dirs)
          expect(readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(pid));
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        const ids = (name: string) =>
          new RegExp(`^${name}:[\\t ]*(.*)$`, 'm').exec(status)?.[1]?.split(/\s+/);
        expect(ids('Uid')).toEqual(Array(4).fill(String(runner.uid)));
        expect(ids('Gid')?.length).toBe(4);
        expect(new Set(ids('Gid')).size).toBe(1);
        expect(ids('Groups')).toEqual(['']);
        for (const caps of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb'])
          expect(ids(caps)).toEqual(['0000000000000000']);
        // Node 24 names its main thread, and so the process, MainThread; earlier Nodes leave the binary's name.
        expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toMatch(
          pid === bwrap ? /^bwrap$/ : /^(node|MainThread)$/,
        );
      }
      // Nothing of the starter is left in bwrap's environment (the shell's PWD): the one the host gave.
      const env = readFileSync(`/proc/${bwrap}/environ`, 'utf8').split('\0').filter(Boolean);
      expect(env.map((e) => e.split('=')[0]).sort()).toEqual([
        'LANG',
        'PATH',
        'REED_SECCOMP',
        'REED_SECRET_FD',
      ]);
    } finally {
      await host.close();
    }
  });

  it('both starters (reed-starter; /bin/sh with setpriv where it was not built) join every file, then run the command as uid:gid with no groups or capabilities and the environment given', async () => {
    expect(process.getuid?.()).toBe(0);
    const { RunnerCgroup } = await import('../../src/backends/process/cgroup.js');
    const { REED_STARTER, bwrapStarter, starterArgs } = await import(
      '../../src/backends/process/runner-process.js'
    );
    // Built on this machine (it has a C compiler), and the one a host takes.
    expect(bwrapStarter()).toBe(REED_STARTER);
    const run = (file: string, args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const c = spawn(file, args, { env: { PATH: '/usr/bin:/bin', ONLY: 'this' }, cwd: '/' });
        let out = '';
        let err = '';
        c.stdout.on('data', (d: Buffer) => {
          out += d;
        });
        c.stderr.on('data', (d: Buffer) => {
          err += d;
        });
        c.once('close', (code) => resolve({ code, out, err }));
      });
    const cgroup = RunnerCgroup.create(
      `starter-test-${process.pid}`,
      { memoryBytes: 256 << 20, pids: 64 },
      undefined,
      undefined,
      true,
    );
    try {
      const tasks = cgroup?.selfJoinFiles();
      if (tasks === undefined) return; // cgroup v2 has no starter
      for (const starter of [REED_STARTER, '/bin/sh']) {
        const uid = 720_800;
        const gid = 720_801;
        const cat = await run(
          starter,
          starterArgs(starter, tasks, uid, gid, ['/bin/cat', '/proc/self/status', '/proc/self/cgroup']),
        );
        expect(cat.code).toBe(0);
        const ids = (name: string) =>
          new RegExp(`^${name}:[\\t ]*(.*)$`, 'm').exec(cat.out)?.[1]?.split(/\s+/);
        expect(ids('Uid')).toEqual(Array(4).fill(String(uid)));
        expect(ids('Gid')).toEqual(Array(4).fill(String(gid)));
        expect(ids('Groups')).toEqual(['']);
        for (const caps of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb'])
          expect(ids(caps)).toEqual(['0000000000000000']);
        for (const dir of cgroup?.dirs ?? []) {
          const [hierarchy, ...path] = dir.slice('/sys/fs/cgroup/'.length).split('/');
          expect(cat.out).toMatch(new RegExp(`^\\d+:[^:]*\\b${hierarchy}\\b[^:]*:/${path.join('/')}$`, 'm'));
        }
        const env = await run(starter, starterArgs(starter, tasks, uid, gid, ['/usr/bin/env']));
        expect(env.out.split('\n').filter(Boolean).sort()).toEqual(['ONLY=this', 'PATH=/usr/bin:/bin']);
      }
      // reed-starter never runs anything as root, nor with ids it cannot read whole.
      for (const [uid, gid] of [
        ['0', '720800'],
        ['720800', '0'],
        ['72o800', '720800'],
        ['-1', '720800'],
        ['4294967295', '1'],
      ]) {
        const refused = await run(REED_STARTER, [
          String(tasks.length),
          ...tasks,
          uid as string,
          gid as string,
          '/bin/echo',
          'ran',
        ]);
        expect(refused.code).toBe(127);
        expect(refused.out).toBe('');
        expect(refused.err).toMatch(/^reed-starter: uid and gid/);
      }
    } finally {
      await cgroup?.remove();
    }
  });

  it('a cgroup the starter cannot join is sandbox_start_failed with the starter\u2019s words, and nothing runs', async () => {
    expect(process.getuid?.()).toBe(0);
    const { RunnerCgroup } = await import('../../src/backends/process/cgroup.js');
    const selfJoinFiles = RunnerCgroup.prototype.selfJoinFiles;
    // A file that refuses a pid: the join fails as a full pids cgroup or a gone cgroup would.
    RunnerCgroup.prototype.selfJoinFiles = function () {
      const files = selfJoinFiles.call(this);
      return files === undefined ? undefined : [...files.slice(1), '/proc/self/stat'];
    };
    try {
      if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return; // v2 has no starter
      const { host } = await startHost([probePlugins()], {
        mode: 'process',
        reedToml: '[signatures]\nrequire = "none"\n',
        supervision: FAST,
      });
      const status = host.status()[0];
      await host.close();
      expect(status).toMatchObject({ state: 'failed', error: { code: 'sandbox_start_failed' } });
      expect(JSON.stringify(status)).toMatch(/reed-starter: \/proc\/self\/stat/);
    } finally {
      RunnerCgroup.prototype.selfJoinFiles = selfJoinFiles;
    }
  });
});

describe('a sandbox that bubblewrap cannot build', () => {
  // A runner command the runner's uid cannot reach (a 0700 directory): bwrap exits before its init exists, so
  // the cgroup join fails (ESRCH). That must be a start error carrying bwrap's own words, and nothing may run.
  it('is sandbox_start_failed (with bwrap\u2019s reason), not an internal error', async () => {
    const hidden = join(tempDir(), 'hidden');
    mkdirSync(hidden, { mode: 0o700 });
    const node = join(hidden, 'node');
    copyFileSync(process.execPath, node);
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
      runnerCommand: [node, '-e', '0'],
    });
    const status = host.status()[0];
    await host.close();
    expect(status).toMatchObject({ state: 'failed', error: { code: 'sandbox_start_failed' } });
  });
});

describe('the network permission in process mode', () => {
  it('a plugin granted network (and allowed by the policy) reaches 127.0.0.1', async () => {
    const root = probePlugins();
    const toml = join(root, 'proc.isolation', 'plugin.toml');
    writeFileSync(toml, `${readFileSync(toml, 'utf8')}[permissions]\nnetwork = true\n`);
    const tcp = createServer((s) => s.end());
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const { host } = await startHost([root], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n[policy.permissions]\nnetwork = true\n',
      supervision: FAST,
    });
    try {
      expect(await probe(host, 'proc.isolation', `tcp ${(tcp.address() as { port: number }).port}`)).toBe(
        '0',
      );
    } finally {
      tcp.close();
      await host.close();
    }
  });
});

// Keeps the probe honest: the ENOENTs above mean "not there", not "the probe is broken".
describe('the probe itself', () => {
  it('reports 0 for what it may reach: its own /tmp and /proc', async () => {
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    try {
      expect(await probe(host, 'proc.isolation', 'list /tmp')).toBe('0');
      expect(await probe(host, 'proc.isolation', 'read /proc/self/status')).toBe('0');
    } finally {
      await host.close();
    }
  });
});

describe('Node\u2019s permission flag', () => {
  it('is --permission from Node 22.13 and 23.5 (24 refuses the old name), --experimental-permission before', async () => {
    const { permissionFlag } = await import('../../src/backends/process/runner-command.js');
    expect(['20.20.2', '22.12.0', '23.4.0'].map((v) => permissionFlag(v))).toEqual(
      Array(3).fill('--experimental-permission'),
    );
    expect(['22.13.0', '23.5.0', '24.0.0', '25.1.0'].map((v) => permissionFlag(v))).toEqual(
      Array(4).fill('--permission'),
    );
  });
});

// ---- Found by the adversarial pass after issue 10's fixes (findings 1, 2's failed spawn, 4 and 5) ----

/** libc for the tests' own fd and rlimit work (what a host's parent or a native addon could have done). */
const libc = koffi.load('libc.so.6');
const fcntl = libc.func('int fcntl(int fd, int cmd, ...)');
koffi.struct('reed_test_rlimit', { cur: 'uint64', max: 'uint64' });
const getrlimit = libc.func('int getrlimit(int resource, _Out_ reed_test_rlimit *rlim)');
const setrlimit = libc.func('int setrlimit(int resource, const reed_test_rlimit *rlim)');
const F_SETFD = 2;
const RLIMIT_NOFILE = 7;
const EROFS = 30;
/** Clears FD_CLOEXEC, as a parent that passed the fd on, or a library that opened it without O_CLOEXEC, left it. */
const inheritable = (fd: number) => expect(fcntl(fd, F_SETFD, 'int', 0)).toBe(0);

/** Device and inode of every open fd of this process (the host), except character devices and anonymous inodes. */
function hostObjects(): Map<string, string> {
  const out = new Map<string, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      const st = fstatSync(Number(fd));
      if (!st.isCharacterDevice() && !target.startsWith('anon_inode:'))
        out.set(`${st.dev}:${st.ino}`, target);
    } catch {}
  }
  return out;
}

describe('a runner inherits none of the host\u2019s open files (found by the adversarial pass, 1)', () => {
  it('not the LMDB storage, not a file or listening socket the host holds without close-on-exec', async () => {
    const dataDir = tempDir('reed-isolation-lmdb-');
    const storage = new LmdbStorage(join(dataDir, 'storage'));
    storage.put('other.plugin', 'token', new TextEncoder().encode('SECRET'), 1 << 20);
    const secretFile = join(tempDir(), 'host-secret');
    writeFileSync(secretFile, 'host secret');
    const secret = openSync(secretFile, 'r');
    inheritable(secret);
    const listening = createServer();
    await new Promise<void>((r) => listening.listen(0, '127.0.0.1', r));
    inheritable((listening as unknown as { _handle: { fd: number } })._handle.fd);
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
      storage: storage as unknown as MemoryStorage,
    });
    try {
      const ours = hostObjects();
      // Not vacuous: the host does hold all three.
      for (const path of [secretFile, join(dataDir, 'storage', 'data.mdb')])
        expect([...ours.values()]).toContain(path);
      const runnerFds = (await probe(host, 'proc.isolation', 'fds')).trim().split('\n');
      expect(runnerFds.length).toBeGreaterThan(3);
      const shared = runnerFds.filter((line) => {
        const [, dev, ino] = line.split(' ');
        return ours.has(`${dev}:${ino}`);
      });
      expect(shared).toEqual([]);
    } finally {
      await host.close();
      closeSync(secret);
      listening.close();
      storage.close();
    }
  });

  it('the LMDB storage opens its files close-on-exec (no child of the host gets them, whatever spawns it)', () => {
    const dir = join(tempDir('reed-isolation-lmdb-'), 'storage');
    const storage = new LmdbStorage(dir);
    try {
      const files = readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`);
        } catch {
          return false;
        }
      });
      expect(files.length).toBeGreaterThan(0);
      for (const fd of files) {
        const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0';
        expect([readlinkSync(`/proc/self/fd/${fd}`), Number.parseInt(flags, 8) & 0o2000000]).toEqual([
          readlinkSync(`/proc/self/fd/${fd}`),
          0o2000000,
        ]);
      }
    } finally {
      storage.close();
    }
  });
});

describe('a spawn that fails is a typed start error (found by the adversarial pass, 2)', () => {
  it('bwrap\u2019s spawn thrown at once (E2BIG) fails the plugin with sandbox_start_failed', async () => {
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
      // One argument over the kernel's 128 KiB per-string limit: execve fails, and Node's spawn throws.
      runnerCommand: [process.execPath, 'x'.repeat(200_000)],
    });
    try {
      expect(host.status()[0]).toMatchObject({ state: 'failed', error: { code: 'sandbox_start_failed' } });
    } finally {
      await host.close();
    }
  });

  it('the host out of fds (EMFILE: no stdio at all) is sandbox_start_failed, not a TypeError', async () => {
    const { spawnSandbox } = await import('../../src/backends/process/spawn-sandbox.js');
    const limit = { cur: 0, max: 0 };
    expect(getrlimit(RLIMIT_NOFILE, limit)).toBe(0);
    const filler: number[] = [];
    let failure: unknown;
    try {
      const highest = Math.max(...readdirSync('/proc/self/fd').map(Number));
      expect(setrlimit(RLIMIT_NOFILE, { cur: highest + 4, max: limit.max })).toBe(0);
      for (;;) {
        try {
          filler.push(openSync('/dev/null', 'r'));
        } catch {
          break;
        }
      }
      await spawnSandbox(
        '/bin/true',
        [],
        { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
        'proc.isolation',
      ).then(
        (child) => child.kill(),
        (error: unknown) => {
          failure = error;
        },
      );
    } finally {
      for (const fd of filler) closeSync(fd);
      setrlimit(RLIMIT_NOFILE, limit);
    }
    expect(failure).toMatchObject({ code: 'sandbox_start_failed' });
  });
});

describe('CPU: limits.cpus is a cgroup quota in process mode (found by the adversarial pass, 4)', () => {
  /** The cgroup directory of a runner that has the cpu controller's files. */
  const cpuDir = (dirs: readonly string[]) => dirs.find((d) => existsSync(join(d, 'cpu.stat')));
  const throttled = (dir: string) =>
    Number(/nr_throttled (\d+)/.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))?.[1] ?? 0);

  it('threads a call leaves spinning after it returns are throttled to the quota', async () => {
    expect(process.getuid?.()).toBe(0); // cgroups need root; this machine runs the suite as root
    const root = probePlugins();
    const toml = join(root, 'proc.isolation', 'plugin.toml');
    writeFileSync(toml, readFileSync(toml, 'utf8').replace('[limits]\n', '[limits]\ncpus = 0.25\n'));
    const { host } = await startHost([root], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    try {
      const runner = runnerOf(host, 'proc.isolation') as RunnerProcess | undefined;
      const dir = cpuDir(runner?.cgroup?.dirs ?? []);
      expect(dir).toBeDefined();
      const node = runnerNodePid(runner?.pid as number);
      expect(readFileSync(join(dir as string, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(node));
      expect(await probe(host, 'proc.isolation', 'spin 4')).toBe('4');
      // No call runs now; the kernel holds the runner to a quarter of a CPU.
      expect(await until(() => throttled(dir as string) > 0, 30_000)).toBe(true);
    } finally {
      await host.close();
    }
  });

  it('cgroup v2: cpu.max holds the quota (a v2-shaped tree: this machine\u2019s v2 has no cpu controller)', async () => {
    const { RunnerCgroup } = await import('../../src/backends/process/cgroup.js');
    const root = tempDir('reed-cgroup-v2-');
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    const cgroup = RunnerCgroup.create(
      'h1.2.3-abcdefgh-v2test',
      { memoryBytes: 1 << 28, pids: 16, cpus: 1.5 },
      root,
    );
    expect(cgroup?.version).toBe(2);
    expect(readFileSync(join(cgroup?.dirs[0] as string, 'cpu.max'), 'utf8')).toBe('150000 100000');
    // The controller handed down from the root: systemd enables memory and pids there, not cpu.
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu');
    expect(readFileSync(join(root, 'reed', 'cgroup.subtree_control'), 'utf8')).toBe('+cpu');
  });
});

describe('/dev in process mode (found by the adversarial pass, 5)', () => {
  it('/dev is read-only, /dev/shm is a tmpfs of tmpfs_mb', async () => {
    const { host } = await startHost([probePlugins()], {
      mode: 'process',
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: FAST,
    });
    try {
      expect(Number(await probe(host, 'proc.isolation', `fillat /dev/shm/x ${20 * 1024 * 1024}`))).toBe(
        ENOSPC,
      );
      expect(Number(await probe(host, 'proc.isolation', `fillat /dev/shm/x ${1024 * 1024}`))).toBe(0);
      expect(Number(await probe(host, 'proc.isolation', 'fillat /dev/y 4096'))).toBe(EROFS);
      expect(Number(await probe(host, 'proc.isolation', 'read /dev/zero'))).toBe(0);
    } finally {
      await host.close();
    }
  });
});
