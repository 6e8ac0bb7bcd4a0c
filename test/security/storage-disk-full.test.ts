import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * A plugin that fills the disk under the host's data directory must not crash the host. LMDB (lmdb-js 3.5.6)
 * corrupts the process's heap when a page write meets ENOSPC (mdb_page_flush formats its error message into a
 * 100-byte allocation it overflows), and the host aborted seconds later in malloc or free. LmdbStorage keeps a
 * reserve of written pages past LMDB's last one, so LMDB never meets a full disk: a write that would need new
 * blocks is refused with `storage_write_failed` before LMDB starts. The storage runs in a child (the fixture, on a
 * tmpfs this test mounts: it runs as root, as CI does) so a crash is seen as its exit, and LMDB's own
 * "Write error" line on its stderr shows that LMDB met the full disk.
 */
const FIXTURE = join(import.meta.dirname, '../fixtures/disk-full/storage-on-full-disk.mjs');
let mount: string | undefined;

afterEach(() => {
  if (mount === undefined) return;
  execFileSync('umount', [mount]);
  rmSync(mount, { recursive: true, force: true });
  mount = undefined;
});

describe('storage on a full disk', () => {
  it.each(['6m', '16m'])(
    'on a %s file system: writes refused with storage_write_failed, LMDB never meets ENOSPC, reads and the data after freeing hold',
    (size) => {
      mount = mkdtempSync(join(tmpdir(), 'reed-storage-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mount]);
      const child = spawnSync(process.execPath, [FIXTURE, mount], { encoding: 'utf8', timeout: 120_000 });
      expect({ status: child.status, signal: child.signal, stderr: child.stderr.slice(0, 2000) }).toEqual({
        status: 0,
        signal: null,
        stderr: '',
      });
      const seen = JSON.parse(child.stdout) as {
        ok: number;
        codes: Record<string, number>;
        readWhileFull: boolean;
        okAfter: number;
        reopened: boolean;
      };
      expect(Object.keys(seen.codes)).toEqual(['storage_write_failed']);
      expect(seen.readWhileFull).toBe(true);
      expect(seen.okAfter).toBe(20);
      expect(seen.reopened).toBe(true);
    },
    180_000,
  );
});
