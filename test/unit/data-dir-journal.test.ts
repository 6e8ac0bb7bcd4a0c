// onUnjournaledExt4 (src/plan/data-dir.ts): on ext4 without a journal the kernel's inode allocator skips recently
// deleted inodes, which fuel does not price (docs/SECURITY.md, "Rates are approximations"); the host warns
// `data_dir_unjournaled`. Real file systems: two ext4 images made and loop-mounted here (root, as in CI), and tmpfs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { onUnjournaledExt4 } from '../../src/plan/data-dir.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';

/** Each image's directory (not tempDir's: its clean-up would meet the mount first), unmounted then removed. */
const made: string[] = [];
afterAll(() => {
  for (const dir of made) {
    execFileSync('umount', [join(dir, 'mnt')]);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An ext4 image of 16 MiB (mkfs gives it a journal unless told not to), loop-mounted. */
function ext4(journal: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'reed-ext4-'));
  made.push(dir);
  const image = join(dir, 'image');
  const mount = join(dir, 'mnt');
  execFileSync('truncate', ['-s', '16M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', ...(journal ? [] : ['-O', '^has_journal']), image]);
  mkdirSync(mount);
  execFileSync('mount', ['-o', 'loop', image, mount]);
  return mount;
}

describe('a data_dir on ext4 without a journal', () => {
  it('is told apart from a journaled ext4 and from tmpfs', () => {
    expect(onUnjournaledExt4(ext4(false))).toBe(true);
    expect(onUnjournaledExt4(ext4(true))).toBe(false);
    expect(onUnjournaledExt4('/dev/shm')).toBe(false);
    expect(onUnjournaledExt4('/nonexistent/path')).toBe(false);
  });

  it('makes the host warn data_dir_unjournaled once, when it first prepares a data directory', async () => {
    const plugins = tempDir('reed-journal-plugins-');
    for (const id of ['fs.a', 'fs.b'])
      writePlugin(
        plugins,
        id,
        { id, permissions: { filesystem: 'readwrite' } },
        { 'plugin.wasm': readFileSync(join(REPO, 'test/fixtures/wasi-fs/probe/plugin.wasm')) },
      );
    const { host, logs, dir } = await startHost([plugins], {
      reedToml: '[policy.permissions]\nfilesystem = "readwrite"\n',
    });
    try {
      const warned = logs.filter((l) => l.code === 'data_dir_unjournaled');
      // The test's data_dir is under the machine's temporary directory: whatever that file system is, the host
      // says what the detector says, once for two plugins.
      expect(warned).toHaveLength(onUnjournaledExt4(join(dir, 'data')) ? 1 : 0);
    } finally {
      await host.close();
    }
  });
});
