import { chmodSync, closeSync, fstatSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { containerSpec } from '../../src/backends/container/container-spec.js';
import { bubblewrapArgs } from '../../src/backends/process/bubblewrap.js';
import { defaultRunnerCommand } from '../../src/backends/process/runner-command.js';
import { openDataDir, takeDataDirBack } from '../../src/backends/shared/data-dir.js';
import { holdDataGroup } from '../../src/backends/shared/data-group.js';
import { newSession } from '../../src/backends/shared/session.js';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import { ensureDataDir } from '../../src/plan/data-dir.js';
import { checkFilesystemSpec } from '../../src/protocol/messages.js';
import { tempDir } from '../helpers/plugin-tree.js';

const bwrap = (dataDir?: { fd: number; readOnly: boolean }) =>
  bubblewrapArgs({
    uid: 600_001,
    gid: 600_001,
    network: false,
    tmpfsBytes: 1,
    shmBytes: 1,
    readOnly: ['/usr/bin/node'],
    socket: '/run/reed-x/s.sock',
    infoFd: 4,
    blockFd: 5,
    ...(dataDir === undefined ? {} : { dataDir }),
  });

const grant = (readOnly: boolean) => ({
  hostPath: '/srv/reed/files/p',
  guestName: '/data',
  readOnly,
  diskBytes: 64 * 1024 * 1024,
  maxFiles: 10_000,
});

const container = (dataDir?: ReturnType<typeof grant>, gid?: number) =>
  containerSpec(
    {
      pluginId: 'p',
      limits: { ...DEFAULT_LIMITS, tmpfsMb: 16, diskMb: 100 },
      session: newSession(),
      image: 'reed-plugin:x',
      runtime: 'runc',
      network: false,
      labels: {},
      ...(dataDir === undefined ? {} : { dataDir }),
    },
    '/run/reed-rt/abc123',
    ['--socket', '/run/reed/s.sock'],
    gid,
  );

describe('process mode: only the plugin directory is bound, at /run/reed-data, by the descriptor the host checked', () => {
  it('binds the descriptor read-write for "readwrite", read-only for "read", before the root is made read-only', () => {
    const rw = bwrap({ fd: 6, readOnly: false });
    const at = rw.indexOf('--bind-fd');
    expect(rw.slice(at, at + 3)).toEqual(['--bind-fd', '6', '/run/reed-data']);
    expect(at).toBeLessThan(rw.lastIndexOf('--remount-ro'));
    const ro = bwrap({ fd: 6, readOnly: true });
    expect(ro.slice(ro.indexOf('--ro-bind-fd'), ro.indexOf('--ro-bind-fd') + 3)).toEqual([
      '--ro-bind-fd',
      '6',
      '/run/reed-data',
    ]);
    expect(ro).not.toContain('--bind-fd');
  });

  it('binds nothing of data_dir without the grant', () => {
    const args = bwrap();
    expect(args).not.toContain('--bind-fd');
    expect(args).not.toContain('--ro-bind-fd');
    expect(args.join(' ')).not.toContain('/run/reed-data');
  });

  it("names the mount in Node's permission model: readable, and writable only for readwrite", () => {
    const rw = defaultRunnerCommand('/tmp', DEFAULT_LIMITS, { path: '/run/reed-data', readOnly: false });
    expect(rw).toContain('--allow-fs-read=/run/reed-data');
    expect(rw).toContain('--allow-fs-write=/run/reed-data');
    const ro = defaultRunnerCommand('/tmp', DEFAULT_LIMITS, { path: '/run/reed-data', readOnly: true });
    expect(ro).toContain('--allow-fs-read=/run/reed-data');
    expect(ro).not.toContain('--allow-fs-write=/run/reed-data');
    expect(defaultRunnerCommand('/tmp', DEFAULT_LIMITS).join(' ')).not.toContain('/run/reed-data');
  });
});

describe('container mode: only the plugin directory is mounted, at /run/reed-data', () => {
  it('mounts it by field (read-only for "read"), and lets one file be as large as the quota', () => {
    const rw = container(grant(false)).HostConfig;
    expect(rw.Mounts).toEqual([
      { Type: 'bind', Source: '/srv/reed/files/p', Target: '/run/reed-data', ReadOnly: false },
    ]);
    expect(rw.Binds).toEqual(['/run/reed-rt/abc123:/run/reed:ro']);
    expect(rw.Ulimits.find((u) => u.Name === 'fsize')).toMatchObject({ Soft: 100 * 1024 * 1024 });
    expect(container(grant(true)).HostConfig.Mounts?.[0]?.ReadOnly).toBe(true);
  });

  it("runs as 65534 with the data directory's group (leased by the runner), 65534:65534 without one", () => {
    expect(container(grant(false), 600_042).User).toBe('65534:600042');
    expect(container().User).toBe('65534:65534');
  });

  it('mounts nothing of data_dir without the grant', () => {
    const spec = container().HostConfig;
    expect(spec.Mounts).toBeUndefined();
    expect(spec.Binds).toEqual(['/run/reed-rt/abc123:/run/reed:ro']);
    expect(spec.Ulimits.find((u) => u.Name === 'fsize')).toMatchObject({ Soft: 16 * 1024 * 1024 });
  });
});

describe('handing the directory to the sandbox that uses it', () => {
  it('gives the directory the sandbox group (no other runner uid can enter it) and opens it for binding', () => {
    const dataDir = tempDir();
    const path = ensureDataDir(dataDir, 'p');
    const fd = openDataDir('p', path, { gid: 600_042, passable: true });
    try {
      expect(fstatSync(fd).isDirectory()).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(statSync(path)).toMatchObject({ gid: 600_042, mode: 0o40770 });
    expect(statSync(join(dataDir, 'files')).mode & 0o7777).toBe(0o711);
  });

  it('takes the group back when that sandbox stops, unless a newer sandbox holds it', () => {
    const path = ensureDataDir(tempDir(), 'p');
    const warnings: string[] = [];
    closeSync(openDataDir('p', path, { gid: 600_042 }));
    closeSync(openDataDir('p', path, { gid: 600_043 }));
    takeDataDirBack(path, 600_042, (m) => warnings.push(m));
    expect(statSync(path).gid).toBe(600_043);
    takeDataDirBack(path, 600_043, (m) => warnings.push(m));
    expect(statSync(path).gid).toBe(process.getgid?.());
    takeDataDirBack(join(path, 'gone'), 600_043, (m) => warnings.push(m));
    expect(warnings).toEqual([expect.stringContaining('gone')]);
  });

  it('never opens a link, and says which directory a runner uid could not pass', () => {
    const root = tempDir();
    mkdirSync(join(root, 'real'));
    symlinkSync(join(root, 'real'), join(root, 'link'));
    expect(() => openDataDir('p', join(root, 'link'))).toThrow(
      expect.objectContaining({ code: 'data_dir_unavailable' }),
    );
    const closed = tempDir();
    const path = ensureDataDir(join(closed, 'data'), 'p');
    chmodSync(closed, 0o700);
    expect(() => openDataDir('p', path, { passable: true })).toThrow(
      expect.objectContaining({ code: 'data_dir_unavailable', message: expect.stringContaining(closed) }),
    );
  });
});

describe('one group per data directory while its runners live (process mode, root host)', () => {
  const range = { start: 690_000, end: 690_099 };
  it('is shared by the runners of one directory, given back with the last, and never one of another directory', async () => {
    const [a1, a2, b] = await Promise.all([
      holdDataGroup('/srv/reed/files/a', range, 'a'),
      holdDataGroup('/srv/reed/files/a', range, 'a'),
      holdDataGroup('/srv/reed/files/b', range, 'b'),
    ]);
    expect(a1.gid).toBe(a2.gid);
    expect(b.gid).not.toBe(a1.gid);
    const last: number[] = [];
    a1.release((gid) => last.push(gid));
    a1.release((gid) => last.push(gid));
    expect(last).toEqual([]);
    a2.release((gid) => last.push(gid));
    expect(last).toEqual([a2.gid]);
    // A start waiting on a group that its last holder released meanwhile gets a live one.
    const again = holdDataGroup('/srv/reed/files/b', range, 'b');
    b.release(() => {});
    const fresh = await again;
    expect(fresh.gid).toBeGreaterThanOrEqual(range.start);
    const other = await holdDataGroup('/srv/reed/files/b', range, 'b');
    expect(other.gid).toBe(fresh.gid);
    for (const g of [fresh, other]) g.release(() => {});
  });
});

describe("the Welcome's filesystem field, checked by the runner before WASI gets it", () => {
  it('takes a grant as planLoad makes it, and nothing else (protocol_violation)', () => {
    const ok = { hostPath: '/run/reed-data', guestName: '/data', readOnly: false, diskBytes: 1, maxFiles: 0 };
    expect(checkFilesystemSpec(ok, 'p')).toEqual(ok);
    expect(checkFilesystemSpec({ ...ok, extra: 'dropped' }, 'p')).toEqual(ok);
    expect(checkFilesystemSpec(undefined, 'p')).toBeUndefined();
    for (const bad of [
      null,
      'x',
      [],
      { ...ok, hostPath: 'run/reed-data' },
      { ...ok, hostPath: '/run/../etc' },
      { ...ok, hostPath: '/run/reed-data\0x' },
      { ...ok, guestName: 7 },
      { ...ok, readOnly: 'no' },
      { ...ok, diskBytes: -1 },
      { ...ok, maxFiles: 1.5 },
      { ...ok, diskBytes: Number.MAX_SAFE_INTEGER + 2 },
    ])
      expect(() => checkFilesystemSpec(bad, 'p')).toThrow(
        expect.objectContaining({ code: 'protocol_violation', pluginId: 'p' }),
      );
  });
});
