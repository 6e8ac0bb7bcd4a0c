import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pluginDataDir } from '../../src/manifest/data-dir.js';
import { ensureDataDir } from '../../src/plan/data-dir.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

const unavailable = (path: string) =>
  expect.objectContaining({ code: 'data_dir_unavailable', message: expect.stringContaining(path) });

describe('a plugin data directory: <data_dir>/files/<plugin id>, made by the host without following a link', () => {
  it('is made with files/ 0711 (passable, not listable) and the plugin directory 0770, and kept as it is', () => {
    const dataDir = join(tempDir(), 'data');
    const path = ensureDataDir(dataDir, 'a.plugin');
    expect(path).toBe(join(dataDir, 'files', 'a.plugin'));
    const uid = process.getuid?.() ?? 0;
    expect(statSync(join(dataDir, 'files'))).toMatchObject({ uid, mode: 0o40711 });
    expect(statSync(path)).toMatchObject({ uid, mode: 0o40770 });
    // Made 0700; a root host (as here and in CI) lets leased runner uids pass it: bubblewrap resolves the path of
    // what it binds as that uid.
    expect(statSync(dataDir).mode & 0o7777).toBe(0o701);
    writeFileSync(join(path, 'kept.txt'), 'data');
    // Again (a restart, a replace): the same directory, its files untouched; another plugin gets its own.
    expect(ensureDataDir(dataDir, 'a.plugin')).toBe(path);
    expect(readFileSync(join(path, 'kept.txt'), 'utf8')).toBe('data');
    expect(ensureDataDir(dataDir, 'b')).toBe(join(dataDir, 'files', 'b'));
  });

  it('sets files/ back to 0711 and the plugin directory back to 0770 when someone changed them', () => {
    const dataDir = tempDir();
    const path = ensureDataDir(dataDir, 'p');
    chmodSync(join(dataDir, 'files'), 0o755);
    chmodSync(path, 0o777);
    ensureDataDir(dataDir, 'p');
    expect(statSync(join(dataDir, 'files')).mode & 0o7777).toBe(0o711);
    expect(statSync(path).mode & 0o7777).toBe(0o770);
  });

  it('never follows a link: data_dir, files/ or the plugin directory being a symlink is refused', () => {
    const elsewhere = tempDir();
    const root = tempDir();
    symlinkSync(elsewhere, join(root, 'data'));
    expect(() => ensureDataDir(join(root, 'data'), 'p')).toThrow(unavailable(join(root, 'data')));

    const dataDir = tempDir();
    symlinkSync(elsewhere, join(dataDir, 'files'));
    expect(() => ensureDataDir(dataDir, 'p')).toThrow(unavailable(join(dataDir, 'files')));

    const other = tempDir();
    mkdirSync(join(other, 'files'), { mode: 0o700 });
    symlinkSync(elsewhere, join(other, 'files', 'p'));
    expect(() => ensureDataDir(other, 'p')).toThrow(unavailable(join(other, 'files', 'p')));
    // Nothing was made or changed where the links pointed.
    expect(lstatSync(elsewhere).mode & 0o7777).toBe(0o755);
    expect(() => lstatSync(join(elsewhere, 'files'))).toThrow();
  });

  it('refuses a path others could change under it: a component writable by others (not sticky) or of another user', () => {
    const open = tempDir();
    chmodSync(open, 0o777);
    expect(() => ensureDataDir(join(open, 'data'), 'p')).toThrow(unavailable(open));
    // A sticky one (like /tmp) is fine: others cannot rename or remove what is ours in it.
    chmodSync(open, 0o1777);
    expect(ensureDataDir(join(open, 'data'), 'p')).toBe(join(open, 'data', 'files', 'p'));

    const foreign = tempDir();
    mkdirSync(join(foreign, 'data'), { mode: 0o755 });
    chownSync(join(foreign, 'data'), 12_345, 12_345);
    expect(() => ensureDataDir(join(foreign, 'data'), 'p')).toThrow(unavailable(join(foreign, 'data')));

    const taken = tempDir();
    mkdirSync(join(taken, 'files', 'p'), { recursive: true, mode: 0o700 });
    chownSync(join(taken, 'files', 'p'), 12_345, 12_345);
    expect(() => ensureDataDir(taken, 'p')).toThrow(unavailable(join(taken, 'files', 'p')));

    const notDir = tempDir();
    mkdirSync(join(notDir, 'files'), { mode: 0o700 });
    writeFileSync(join(notDir, 'files', 'p'), 'x');
    expect(() => ensureDataDir(notDir, 'p')).toThrow(unavailable(join(notDir, 'files', 'p')));
  });

  it('asserts the id is one path component: never "..", "", a slash or anything else not a plugin id', () => {
    for (const id of ['..', '.', '', 'a/b', '../x', 'A', 'a\0b', `${'a'.repeat(129)}`]) {
      expect(() => pluginDataDir('/srv/reed', id)).toThrow(
        expect.objectContaining({ code: 'plugin_invalid' }),
      );
    }
    expect(() => ensureDataDir('relative/data', 'p')).toThrow(unavailable('relative/data'));
  });
});

describe('container mode on a host that is not root', () => {
  it("is refused a plugin's data directory at once (data_dir_unavailable, saying to run as root), the directory unchanged", () => {
    // A host running as uid 12345 that owns its data_dir and runtime_dir, starting a container runner (from dist/)
    // for a plugin with a directory: it cannot give the directory a leased group, and says so before anything else.
    const HOST = 12_345;
    const base = tempDir();
    const path = ensureDataDir(join(base, 'data'), 'p');
    for (const dir of [join(base, 'data'), join(base, 'data', 'files'), path]) chownSync(dir, HOST, HOST);
    mkdirSync(join(base, 'runtime'));
    chownSync(join(base, 'runtime'), HOST, HOST);
    const dist = (file: string) => JSON.stringify(join(REPO, 'dist/src', file));
    const script = `
      import { ContainerRunner } from ${dist('backends/container/container-runner.js')};
      import { newSession } from ${dist('backends/shared/session.js')};
      import { DEFAULT_LIMITS } from ${dist('manifest/limits.js')};
      const logger = { warn() {}, info() {}, debug() {}, error() {}, child() { return logger; } };
      const runner = new ContainerRunner({
        pluginId: 'p', host: {}, limits: DEFAULT_LIMITS, logger, runtimeDir: ${JSON.stringify(join(base, 'runtime'))},
        session: newSession(), startTimeoutMs: 1000, spec: {}, bytes: new Uint8Array(), engine: {}, image: 'x',
        runtime: 'runc', network: false, labels: {},
        dataDir: { hostPath: ${JSON.stringify(path)}, guestName: '/data', readOnly: false, diskBytes: 1, maxFiles: 1 },
      });
      try {
        await runner.start();
        process.stdout.write('started');
      } catch (e) {
        process.stdout.write(JSON.stringify({ code: e.code, message: e.message }));
      } finally {
        await runner.destroy();
      }`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      uid: HOST,
      gid: HOST,
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({
      code: 'data_dir_unavailable',
      message: expect.stringMatching(/plugin "p".*run the host as root/),
    });
    expect(JSON.parse(run.stdout).message).toContain(path);
    expect(statSync(path)).toMatchObject({ uid: HOST, gid: HOST, mode: 0o40770 });
  });
});
