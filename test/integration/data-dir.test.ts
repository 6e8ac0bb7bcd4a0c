// The filesystem permission end to end (issue 12, item 2), in every mode: a C plugin (test/fixtures/data-dir/files,
// ordinary stdio and dirent through wasi-libc) uses its private directory, preopened as /data; the host makes it at
// <data_dir>/files/<plugin id>, mounts only it in process and container modes, and WASI enforces the quotas.
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRunner } from '../../src/backends/container/container-runner.js';
import type { LazySandbox } from '../../src/backends/lazy-sandbox.js';
import type { RunnerProcess } from '../../src/backends/process/runner-process.js';
import type { Runner } from '../../src/backends/shared/runner.js';
import { DEFAULT_RUNNER_UIDS } from '../../src/backends/shared/uid-pool.js';
import type { SupervisedSandbox } from '../../src/backends/supervisor.js';
import type { ParsedCandidate } from '../../src/discovery/candidate.js';
import type { ReedError } from '../../src/errors.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, text } from '../helpers/host.js';
import { NODE_IN_IMAGE } from '../helpers/hostile-image.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';

const WASM = join(REPO, 'test/fixtures/data-dir/files/plugin.wasm');
/** A WASI reactor making raw preview1 calls from a script; its descriptors live across calls (wasi-fs.test.ts). */
const PROBE = join(REPO, 'test/fixtures/wasi-fs/probe/plugin.wasm');
const FAST = { startTimeoutMs: 60_000, graceMs: 500, restartBaseMs: 20, restartMaxMs: 200 };

type Level = 'none' | 'read' | 'readwrite';

/** A copy of the fixture as plugin `id`, asking `filesystem`, with `limits` (and `[sandbox] replicas`). */
function plugin(
  root: string,
  id: string,
  filesystem: Level,
  limits: Record<string, number> = {},
  replicas = 1,
): void {
  writePlugin(
    root,
    id,
    { id, permissions: { filesystem }, limits, ...(replicas === 1 ? {} : { sandbox: { replicas } }) },
    { 'plugin.wasm': readFileSync(WASM) },
  );
}

const hosts: PluginHost[] = [];
afterEach(async () => {
  for (const host of hosts.splice(0)) await host.close();
});

/** A host over `root` whose policy allows the filesystem, with its data in `dataDir` (kept across hosts). */
async function start(
  target: Target,
  root: string,
  dataDir: string,
): Promise<{ host: PluginHost; logs: LogLine[] }> {
  const dir = tempDir('reed-data-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    [
      'cache_dir = "cache"',
      `data_dir = "${dataDir}"`,
      'runtime_dir = "runtime"',
      '[sandbox]',
      `runtime = "${target.runtime}"`,
      '[signatures]',
      'require = "none"',
      '[policy.permissions]',
      'filesystem = "readwrite"',
    ].join('\n'),
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [root], defaultSearchPaths: false },
  });
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => logs.push(JSON.parse(line) as LogLine) },
  );
  const host = await PluginHost.start({
    config,
    logger,
    services: { storage: new MemoryStorage() },
    forceMode: target.mode,
    supervision: FAST,
  });
  hosts.push(host);
  for (const s of host.status())
    expect([s.id, s.state, s.error?.message]).toEqual([s.id, 'ready', undefined]);
  return { host, logs };
}

const call = async (host: PluginHost, id: string, fn: string, input = '') =>
  text((await host.call(id, fn, input)).output);

/** The call's error: its code and the plugin's own (the errno name, from the fixture). */
async function failure(host: PluginHost, id: string, fn: string, input = '') {
  try {
    await host.call(id, fn, input);
  } catch (error) {
    const e = error as ReedError;
    return { code: e.code, pluginCode: e.details?.pluginCode };
  }
  throw new Error(`${id}.${fn}(${input}) succeeded`);
}

const runnerOf = (host: PluginHost, id: string): Runner | undefined =>
  ((host.sandbox(id) as LazySandbox).inner as SupervisedSandbox).runner;

/**
 * What the sandbox has mounted at /run/reed-data, as the host sees it (the runner's mountinfo; docker inspect):
 * read-write or read-only, and the source's path under data_dir.
 */
async function mountedData(
  host: PluginHost,
  id: string,
  target: Target,
): Promise<{ access: string; source: string }[]> {
  const under = (path: string) => path.split('/').slice(-2).join('/');
  if (target.mode === 'process') {
    const runner = runnerOf(host, id) as RunnerProcess;
    // mountinfo: id parent major:minor root mountpoint options ...; root is the path inside its file system.
    return readFileSync(`/proc/${runner.initPid}/mountinfo`, 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .filter((f) => f[4] === '/run/reed-data')
      .map((f) => ({ access: (f[5] ?? '').split(',')[0] as string, source: under(f[3] ?? '') }));
  }
  const container = (runnerOf(host, id) as ContainerRunner).container as Docker.Container;
  const info = (await container.inspect()) as unknown as {
    Mounts: { Type: string; Source: string; Destination: string; RW: boolean }[];
  };
  return info.Mounts.filter((m) => m.Destination === '/run/reed-data').map((m) => ({
    access: m.RW ? 'rw' : 'ro',
    source: under(m.Source),
  }));
}

/** The credentials of every process in a container (but the one asking), from /proc inside it (docker exec). */
async function processesInside(
  container: Docker.Container,
): Promise<{ name: string; uid: string; gid: string; groups: string }[]> {
  const script = String.raw`const fs = require('fs');
const out = [];
for (const p of fs.readdirSync('/proc')) {
  if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
  let s;
  try { s = fs.readFileSync('/proc/' + p + '/status', 'utf8'); } catch { continue; }
  const f = (k) => (s.split('\n').find((l) => l.startsWith(k + ':')) || '').slice(k.length + 1).trim().replace(/\s+/g, ' ');
  out.push({ name: f('Name'), uid: f('Uid'), gid: f('Gid'), groups: f('Groups') });
}
process.stdout.write(JSON.stringify(out));`;
  const exec = await container.exec({
    Cmd: [NODE_IN_IMAGE, '-e', script],
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: false });
  const [out, err] = [new PassThrough(), new PassThrough()];
  const chunks: Buffer[][] = [[], []];
  out.on('data', (c: Buffer) => chunks[0]?.push(c));
  err.on('data', (c: Buffer) => chunks[1]?.push(c));
  container.modem.demuxStream(stream, out, err);
  await new Promise((resolve) => stream.on('end', resolve));
  const text = Buffer.concat(chunks[0] ?? []).toString();
  expect([text.slice(0, 1), Buffer.concat(chunks[1] ?? []).toString()]).toEqual(['[', '']);
  return JSON.parse(text);
}

/** The gid of each process of the plugin's sandbox: the runner's on the host (process), every one in the container. */
async function sandboxGids(host: PluginHost, id: string, target: Target): Promise<number[]> {
  if (target.mode === 'process') {
    const status = readFileSync(`/proc/${runnerOf(host, id)?.pid}/status`, 'utf8');
    return [Number(/^Gid:\s+(\d+)/m.exec(status)?.[1])];
  }
  const inside = await processesInside((runnerOf(host, id) as ContainerRunner).container as Docker.Container);
  expect(inside.length).toBeGreaterThan(0);
  // Real, effective, saved and filesystem gids all the same.
  return inside.map((p) => {
    const gids = p.gid.split(' ');
    expect(new Set(gids).size).toBe(1);
    return Number(gids[0]);
  });
}

/** What a host process running as uid:gid (no supplementary groups) gets listing `path`: "entered" or the errno. */
function listAs(path: string, uid: number, gid: number): string {
  const script = `try { require('fs').readdirSync(${JSON.stringify(path)}); process.stdout.write('entered'); } catch (e) { process.stdout.write(e.code); }`;
  return spawnSync(process.execPath, ['-e', script], { uid, gid, encoding: 'utf8' }).stdout;
}

/** A new sandbox for the plugin: the runner killed and restarted by its supervisor; in mode none, a replace. */
async function restartSandbox(host: PluginHost, id: string, target: Target): Promise<void> {
  if (target.mode === 'none') {
    await host.replace(id, host.scan.candidates.find((c) => c.id === id) as ParsedCandidate);
    return;
  }
  const before = runnerOf(host, id);
  before?.kill();
  for (let i = 0; i < 600 && (runnerOf(host, id) === before || runnerOf(host, id)?.alive !== true); i++)
    await new Promise((r) => setTimeout(r, 50));
  expect(runnerOf(host, id)).not.toBe(before);
}

interface Target {
  name: string;
  mode: SandboxMode;
  runtime: 'runc' | 'runsc';
}
const TARGETS: Target[] = [
  { name: 'none', mode: 'none', runtime: 'runc' },
  { name: 'process', mode: 'process', runtime: 'runc' },
  { name: 'container (runc)', mode: 'container', runtime: 'runc' },
  { name: 'container (runsc)', mode: 'container', runtime: 'runsc' },
];

describe.each(TARGETS)('the data directory in mode $name', (target) => {
  it('holds what the plugin writes, lists it, and keeps it across a sandbox restart, a replace, a remove and a new host', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.a', 'readwrite');
    let { host } = await start(target, root, dataDir);
    expect(await call(host, 'fs.a', 'preopen')).toBe('dir /data');
    await call(host, 'fs.a', 'put', 'notes.txt\nhello, disk');
    await call(host, 'fs.a', 'mkdir', 'sub');
    await call(host, 'fs.a', 'put', 'sub/deep.txt\ndeeper');
    expect(await call(host, 'fs.a', 'get', 'notes.txt')).toBe('hello, disk');
    expect(await call(host, 'fs.a', 'ls', '/data')).toBe('notes.txt\nsub\n');
    expect(await call(host, 'fs.a', 'ls', '/data/sub')).toBe('deep.txt\n');
    // Where the operator finds it (to seed it, or back it up).
    expect(readFileSync(join(dataDir, 'files', 'fs.a', 'notes.txt'), 'utf8')).toBe('hello, disk');

    await restartSandbox(host, 'fs.a', target);
    expect(await call(host, 'fs.a', 'get', 'notes.txt')).toBe('hello, disk');
    await call(host, 'fs.a', 'put', 'notes.txt\nafter a restart');

    const candidate = host.scan.candidates.find((c) => c.id === 'fs.a') as ParsedCandidate;
    await host.replace('fs.a', candidate);
    expect(await call(host, 'fs.a', 'get', 'notes.txt')).toBe('after a restart');
    // Removed from the host, the plugin's data stays (as its storage does) until the operator removes it.
    await host.remove('fs.a');
    expect(readFileSync(join(dataDir, 'files', 'fs.a', 'notes.txt'), 'utf8')).toBe('after a restart');
    await host.add(candidate);
    expect(await call(host, 'fs.a', 'get', 'notes.txt')).toBe('after a restart');

    await host.close();
    ({ host } = await start(target, root, dataDir));
    expect(await call(host, 'fs.a', 'get', 'sub/deep.txt')).toBe('deeper');
    expect(await call(host, 'fs.a', 'ls', '/data')).toBe('notes.txt\nsub\n');
  });

  it('is never shared: another plugin finds nothing of it, through /data, "..", "/" or path_open on fd 3', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.a', 'readwrite');
    plugin(root, 'fs.b', 'readwrite');
    const { host } = await start(target, root, dataDir);
    await call(host, 'fs.a', 'put', 'secret.txt\nA-SECRET');
    await call(host, 'fs.b', 'put', 'mine.txt\nB');
    expect(await call(host, 'fs.b', 'ls', '/data')).toBe('mine.txt\n');
    const found = await call(host, 'fs.b', 'probe', 'fs.a');
    expect(found).not.toContain('A-SECRET');
    expect(found).not.toMatch(/root:x?:0:/);
    expect(found).not.toContain('OPENED');
    // Every way out answered an error (libc: ENOENT or ENOTCAPABLE; raw path_open: ENOTCAPABLE or EPERM).
    const lines = found.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(18);
    for (const line of lines) expect(line).toMatch(/: (ENOENT|ENOTCAPABLE|EPERM|EACCES|ENOTDIR)$/);
    expect(await call(host, 'fs.a', 'get', 'secret.txt')).toBe('A-SECRET');
  });

  it('"read" cannot change anything: the directory is readable, every write is refused', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.w', 'readwrite');
    let { host } = await start(target, root, dataDir);
    await call(host, 'fs.w', 'put', 'seed.txt\nseeded');
    await host.close();
    // The same directory, read-only: the plugin's id is what names it, so a copy asking "read" under that id.
    const readRoot = tempDir('reed-data-plugins-');
    plugin(readRoot, 'fs.w', 'read');
    ({ host } = await start(target, readRoot, dataDir));
    expect(await call(host, 'fs.w', 'get', 'seed.txt')).toBe('seeded');
    expect(await call(host, 'fs.w', 'ls', '/data')).toBe('seed.txt\n');
    for (const [fn, input] of [
      ['put', 'seed.txt\nchanged'],
      ['put', 'new.txt\nnew'],
      ['mkdir', 'sub'],
      ['fill', 'seed.txt\n10'],
    ] as const) {
      const refused = await failure(host, 'fs.w', fn, input);
      expect([fn, refused.code]).toEqual([fn, 'plugin_error']);
      expect(['EROFS', 'ENOTCAPABLE', 'EPERM', 'EACCES']).toContain(refused.pluginCode);
    }
    expect(readFileSync(join(dataDir, 'files', 'fs.w', 'seed.txt'), 'utf8')).toBe('seeded');
  });

  it('without the grant there is no preopen: fd_prestat_get answers EBADF, and /data does not exist', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.n', 'none');
    const { host } = await start(target, root, dataDir);
    expect(await call(host, 'fs.n', 'preopen')).toBe('EBADF');
    expect((await failure(host, 'fs.n', 'ls', '/data')).code).toBe('plugin_error');
    expect((await failure(host, 'fs.n', 'put', 'x.txt\nx')).code).toBe('plugin_error');
  });

  it('reports quotas with their codes: EDQUOT to the plugin, disk_quota_exceeded and file_quota_exceeded in its log', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.q', 'readwrite', { disk_mb: 1, max_files: 5 });
    const { host, logs } = await start(target, root, dataDir);
    await call(host, 'fs.q', 'fill', 'small\n50000');
    // Names first: once the disk is full, a new name is refused as disk (it may grow its directory). Then bytes,
    // into a name that exists (a new one would pass max_files).
    expect(await failure(host, 'fs.q', 'many', 'f\n10')).toEqual({
      code: 'plugin_error',
      pluginCode: 'EDQUOT',
    });
    expect(await failure(host, 'fs.q', 'fill', 'f0\n2000000')).toEqual({
      code: 'plugin_error',
      pluginCode: 'EDQUOT',
    });
    const said = (code: string) =>
      logs.some((l) => l.pluginId === 'fs.q' && (l.code === code || String(l.msg).includes(code)));
    for (let i = 0; i < 100 && !(said('disk_quota_exceeded') && said('file_quota_exceeded')); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect([said('disk_quota_exceeded'), said('file_quota_exceeded')]).toEqual([true, true]);
    // What was written within the quota is intact.
    expect(await call(host, 'fs.q', 'get', 'small')).toHaveLength(50_000);
  });
});

/** Bytes of the regular files under `dir` and how many names it holds (files, directories), as the quota counts. */
function held(dir: string): { bytes: number; names: number } {
  let bytes = 0;
  let names = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    names++;
    const path = join(dir, entry.name);
    if (entry.isFile()) bytes += statSync(path).size;
    if (entry.isDirectory()) {
      const under = held(path);
      bytes += under.bytes;
      names += under.names;
    }
  }
  return { bytes, names };
}

describe.each(TARGETS.filter((t) => t.mode !== 'none' && t.runtime === 'runc'))(
  'the quotas of a directory written by two runners, mode $name',
  (target) => {
    // Issue 10: each runner counted the directory for itself, so two replicas that had both counted it could each
    // fill the whole quota. The host's ledger leases the quotas to them (src/backends/shared/disk-ledger.ts).
    it('two replicas together stay within disk_mb and max_files; what one frees, the other may use', async () => {
      const root = tempDir('reed-data-plugins-');
      const dataDir = join(tempDir('reed-data-'), 'data');
      plugin(root, 'fs.two', 'readwrite', { disk_mb: 1, max_files: 8 }, 2);
      const { host, logs } = await start(target, root, dataDir);
      const dir = join(dataDir, 'files', 'fs.two');
      // One call at a time goes to each replica in turn: both count the directory (nearly empty) first.
      await call(host, 'fs.two', 'put', 'a\n1');
      await call(host, 'fs.two', 'put', 'b\n2');
      const outcome = async (fn: string, input: string) =>
        host.call('fs.two', fn, input).then(
          () => 'ok',
          (error: ReedError) => `${error.code} ${String(error.details?.pluginCode)}`,
        );
      // Names first (a full disk refuses a new name as disk): 2 made, then 4 from one replica and 4 from the other.
      expect([await outcome('many', 'm\n4'), await outcome('many', 'n\n4')]).toEqual([
        'ok',
        'plugin_error EDQUOT',
      ]);
      expect(held(dir).names).toBe(8);
      // Then bytes, into names made: 600,000 from one replica, then the other (1.2 MB in all would pass 1 MiB).
      expect([await outcome('fill', 'm0\n600000'), await outcome('fill', 'n0\n600000')]).toEqual([
        'ok',
        'plugin_error EDQUOT',
      ]);
      expect(held(dir).bytes).toBeLessThanOrEqual(1024 * 1024);
      // What one replica frees, the other may use: the first gives its file back, the second fills its own.
      expect(await outcome('fill', 'm0\n0')).toBe('ok');
      expect(await outcome('fill', 'n0\n600000')).toBe('ok');
      expect(held(dir).bytes).toBeLessThanOrEqual(1024 * 1024);
      const said = (code: string) =>
        logs.some((l) => l.pluginId === 'fs.two' && (l.code === code || String(l.msg).includes(code)));
      for (let i = 0; i < 100 && !(said('disk_quota_exceeded') && said('file_quota_exceeded')); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect([said('disk_quota_exceeded'), said('file_quota_exceeded')]).toEqual([true, true]);
    });

    // The seventh review: replica A filled a file, B opened it and kept it open, A removed it and gave its bytes
    // back while they stayed on disk (B's descriptor): five rounds held 4.5 MB under 1 MiB. Now the last process to
    // close a removed file gives its bytes back (a shared flock on every open of a regular file says who holds one).
    it('a file one replica holds open and the other removes stays counted until the holder closes it', async () => {
      const root = tempDir('reed-data-plugins-');
      const dataDir = join(tempDir('reed-data-'), 'data');
      writePlugin(
        root,
        'fs.pin',
        {
          id: 'fs.pin',
          permissions: { filesystem: 'readwrite' },
          limits: { disk_mb: 1 },
          sandbox: { replicas: 2 },
        },
        { 'plugin.wasm': readFileSync(PROBE) },
      );
      const { host } = await start(target, root, dataDir);
      const run = async (script: string) =>
        text((await host.call('fs.pin', 'run', script)).output)
          .trimEnd()
          .split('\n');
      // One call at a time goes to each replica in turn: A, B, A, B.
      expect(await run('open 3 f1 cw\nsize 4 900000\nclose 4')).toEqual(['fd 4', 'ok', 'ok']); // A
      expect(await run('open 3 f1 r')).toEqual(['fd 4']); // B, kept open
      expect(await run('unlink 3 f1')).toEqual(['ok']); // A
      expect(await run('stat 3 .')).toHaveLength(1); // B
      // The 900,000 bytes are still on disk (B's descriptor), so still counted: A cannot fill 900,000 more.
      expect(await run('open 3 f2 cw\nsize 4 900000\nclose 4')).toEqual(['fd 4', 'err 19', 'ok']); // A
      expect(await run('close 4')).toEqual(['ok']); // B: the last close gives them back
      expect(await run('open 3 f3 cw\nsize 4 900000\nclose 4')).toEqual(['fd 4', 'ok', 'ok']); // A
    });
  },
);

describe.each(TARGETS.filter((t) => t.mode !== 'none'))('what is mounted in mode $name', (target) => {
  it('only the plugin directory, at /run/reed-data: read-write, read-only for "read", nothing without the grant', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.g', 'readwrite');
    plugin(root, 'fs.r', 'read');
    plugin(root, 'fs.n', 'none');
    const { host } = await start(target, root, dataDir);
    expect(await mountedData(host, 'fs.g', target)).toEqual([{ access: 'rw', source: 'files/fs.g' }]);
    expect(await mountedData(host, 'fs.r', target)).toEqual([{ access: 'ro', source: 'files/fs.r' }]);
    expect(await mountedData(host, 'fs.n', target)).toEqual([]);
  });
});

const [PROCESS, RUNC, RUNSC] = TARGETS.slice(1) as [Target, Target, Target];

describe.each([RUNC, RUNSC])(
  'the data directory in mode $name: a group leased for it, not nogroup',
  (target) => {
    it("runs the container as 65534:<the directory's leased gid>, another plugin's as another, and takes the directory back after stop", async () => {
      const root = tempDir('reed-data-plugins-');
      const dataDir = join(tempDir('reed-data-'), 'data');
      plugin(root, 'fs.a', 'readwrite');
      plugin(root, 'fs.b', 'readwrite');
      plugin(root, 'fs.n', 'none');
      const { host } = await start(target, root, dataDir);
      await call(host, 'fs.a', 'put', 'secret.txt\nA-SECRET');
      await call(host, 'fs.b', 'put', 'mine.txt\nB');
      const dirA = join(dataDir, 'files', 'fs.a');
      const dirB = join(dataDir, 'files', 'fs.b');
      const [gidA, gidB] = [statSync(dirA).gid, statSync(dirB).gid];
      // Leased from runner_uids, one per directory: never 65534 (nogroup), never the other plugin's.
      for (const gid of [gidA, gidB]) {
        expect(gid).toBeGreaterThanOrEqual(DEFAULT_RUNNER_UIDS.start);
        expect(gid).toBeLessThanOrEqual(DEFAULT_RUNNER_UIDS.end);
      }
      expect(gidA).not.toBe(gidB);
      expect(statSync(dirA).mode & 0o7777).toBe(0o770);
      const userOf = async (id: string) =>
        (
          (await (
            (runnerOf(host, id) as ContainerRunner).container as Docker.Container
          ).inspect()) as Docker.ContainerInspectInfo
        ).Config.User;
      expect([await userOf('fs.a'), await userOf('fs.b'), await userOf('fs.n')]).toEqual([
        `65534:${gidA}`,
        `65534:${gidB}`,
        '65534:65534',
      ]);
      // Inside, every process of fs.a's container (its init, the runner) is uid 65534 with that gid and no other group
      // (Docker lists the primary group as the only supplementary one).
      const inside = await processesInside(
        (runnerOf(host, 'fs.a') as ContainerRunner).container as Docker.Container,
      );
      expect(inside.length).toBeGreaterThanOrEqual(2);
      for (const p of inside)
        expect(p).toEqual({
          name: p.name,
          uid: '65534 65534 65534 65534',
          gid: `${gidA} ${gidA} ${gidA} ${gidA}`,
          groups: `${gidA}`,
        });
      expect(new Set(await sandboxGids(host, 'fs.b', target))).toEqual(new Set([gidB]));
      // On the machine: nobody:nogroup (what many daemons run as) and fs.b's container's credentials cannot enter
      // fs.a's directory; fs.a's can (so the refusals are the group's, not a directory above).
      expect(listAs(dirA, 65_534, 65_534)).toBe('EACCES');
      expect(listAs(dirA, 65_534, gidB)).toBe('EACCES');
      expect(listAs(dirA, 65_534, gidA)).toBe('entered');
      expect(await call(host, 'fs.a', 'get', 'secret.txt')).toBe('A-SECRET');
      // Stopped: the directories are the host's group again, and the leased gid no longer opens them.
      await host.close();
      expect([statSync(dirA).gid, statSync(dirB).gid]).toEqual([process.getgid?.(), process.getgid?.()]);
      expect(listAs(dirA, 65_534, gidA)).toBe('EACCES');
    });
  },
);

describe.each([
  { name: 'process', older: PROCESS, newer: PROCESS },
  { name: 'container (runc)', older: RUNC, newer: RUNC },
  { name: 'container (runsc)', older: RUNSC, newer: RUNSC },
  { name: 'process, then container (runc)', older: PROCESS, newer: RUNC },
])(
  'the data directory in mode $name, two sandboxes of one plugin at once (an upgrade draining)',
  ({ older: first, newer: second }) => {
    it('an older sandbox keeps the directory when a newer one starts, and the last one gives it back to the host', async () => {
      const root = tempDir('reed-data-plugins-');
      const dataDir = join(tempDir('reed-data-'), 'data');
      plugin(root, 'fs.a', 'readwrite');
      const older = (await start(first, root, dataDir)).host;
      await call(older, 'fs.a', 'put', 'old.txt\nfrom the older');
      // Another host on the same data_dir in this process: its sandbox of fs.a runs beside the first one.
      const newer = (await start(second, root, dataDir)).host;
      await call(newer, 'fs.a', 'put', 'new.txt\nfrom the newer');
      expect(await call(older, 'fs.a', 'get', 'new.txt')).toBe('from the newer');
      await call(older, 'fs.a', 'put', 'old.txt\nstill writing');
      expect(await call(newer, 'fs.a', 'get', 'old.txt')).toBe('still writing');
      const group = statSync(join(dataDir, 'files', 'fs.a')).gid;
      expect(group).toBeGreaterThanOrEqual(DEFAULT_RUNNER_UIDS.start);
      for (const gid of [
        ...(await sandboxGids(older, 'fs.a', first)),
        ...(await sandboxGids(newer, 'fs.a', second)),
      ])
        expect(gid).toBe(group);
      expect(runnerOf(older, 'fs.a')).not.toBe(runnerOf(newer, 'fs.a'));
      await older.close();
      expect(statSync(join(dataDir, 'files', 'fs.a')).gid).toBe(group);
      expect(await call(newer, 'fs.a', 'get', 'old.txt')).toBe('still writing');
      await newer.close();
      expect(statSync(join(dataDir, 'files', 'fs.a')).gid).toBe(process.getgid?.());
    });
  },
);

describe('the data directory in process mode, against a hostile native plugin beside it', () => {
  it('the native plugin reaches neither the directory on the host nor a mount of it (errno ENOENT)', async () => {
    const root = tempDir('reed-data-plugins-');
    const dataDir = join(tempDir('reed-data-'), 'data');
    plugin(root, 'fs.a', 'readwrite');
    cpSync(join(REPO, 'test/fixtures/native-process/isolation'), join(root, 'proc.isolation'), {
      recursive: true,
    });
    const { host } = await start(TARGETS[1] as Target, root, dataDir);
    await call(host, 'fs.a', 'put', 'secret.txt\nA-SECRET');
    const probe = async (command: string) => Number(await call(host, 'proc.isolation', 'probe', command));
    const ENOENT = 2;
    const secret = join(dataDir, 'files', 'fs.a', 'secret.txt');
    expect([secret, await probe(`read ${secret}`)]).toEqual([secret, ENOENT]);
    for (const path of [dataDir, join(dataDir, 'files'), join(dataDir, 'files', 'fs.a'), '/run/reed-data'])
      expect([path, await probe(`list ${path}`)]).toEqual([path, ENOENT]);
    expect(readFileSync(secret, 'utf8')).toBe('A-SECRET');
  });
});
