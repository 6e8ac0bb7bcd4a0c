import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { isReedError } from '../../src/errors.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { LmdbStorage } from '../../src/host/lmdb-storage.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Class 15 of issue 10: the storage quota counted logical bytes (key + value), and LMDB grew to 9x the quota
 * before `storage_quota_exceeded`. The quota must hold for what the plugin makes the host's disk hold.
 */

const FILL = join(REPO, 'test/fixtures/storage/fill');
const FILL_ID = 'fixture.storage-fill';
const QUOTA = 262_144; // the fixture's limits.storage_quota_bytes
/** An empty environment, meta and root pages, branch pages, the free list and copy-on-write leftovers. */
const BASE = 64 * 1024;

// LMDB data on tmpfs: the same file layout as on a disk, without an fsync per write (tens of thousands of them in
// the unfixed case), so that the test measures growth rather than the disk.
const shm: string[] = [];
afterEach(() => {
  for (const dir of shm.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function dataDir(): string {
  const dir = mkdtempSync('/dev/shm/reed-quota-');
  shm.push(dir);
  return dir;
}

/** Where LMDB's pages end in the environment at `dir` (past it, data.mdb holds only the storage's reserve). */
function pagesEnd(dir: string): number {
  const env = open({ path: dir, readOnly: true });
  try {
    const { lastPageNumber, pageSize } = env.getStats() as { lastPageNumber: number; pageSize: number };
    return (lastPageNumber + 1) * pageSize;
  } finally {
    env.close();
  }
}

/**
 * Fills the plugin's storage with `fn` until the quota code; returns how much LMDB's pages grew, and how far the
 * file reaches past them (the reserve of written pages LmdbStorage keeps so LMDB never meets a full disk).
 */
async function fillUntilQuota(
  fn: 'tiny' | 'page' | 'half',
): Promise<{ grew: number; reserve: number; code: string }> {
  const data = dataDir();
  const dir = tempDir('reed-host-');
  writeFileSync(
    join(dir, 'reed.toml'),
    `cache_dir = "cache"\ndata_dir = "${data}"\nruntime_dir = "runtime"\n`,
  );
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [join(FILL, '..')], defaultSearchPaths: false },
  });
  const host = await PluginHost.start({ config, logger: pino({ level: 'silent' }), plugins: [FILL_ID] });
  const file = join(data, 'storage', 'data.mdb');
  const before = statSync(file).size; // no write yet: LMDB's pages alone
  let code = 'none';
  try {
    await host.call(FILL_ID, fn);
  } catch (error) {
    code = isReedError(error) ? error.code : String(error);
  } finally {
    await host.close();
  }
  const end = pagesEnd(join(data, 'storage'));
  return { grew: end - before, reserve: statSync(file).size - end, code };
}

/** The reserve's most: LmdbStorage's RESERVE_BYTES, its slack pages, and the largest single write (under QUOTA). */
const RESERVE_MOST = LmdbStorage.RESERVE_BYTES + 2 * LmdbStorage.SLACK_PAGES * 4096 + QUOTA;

describe('class 15: the storage quota holds on disk', () => {
  it.each(['tiny', 'page', 'half'] as const)(
    'a plugin storing %s values until the quota grows LMDB by at most 1.5x the quota plus a fixed base',
    async (fn) => {
      const { grew, reserve, code } = await fillUntilQuota(fn);
      expect(code).toBe('storage_quota_exceeded');
      expect(grew).toBeLessThanOrEqual(1.5 * QUOTA + BASE);
      // The reserve is the store's, once: it does not grow with what a plugin stores.
      expect(reserve).toBeLessThanOrEqual(RESERVE_MOST);
    },
  );

  it('memory and LMDB storage account the same, and LMDB again after a reopen', () => {
    const data = dataDir();
    const memory = new MemoryStorage();
    let lmdb = new LmdbStorage(join(data, 'storage'));
    const writes: [string, number][] = [
      ['a', 0],
      ['b', 1],
      ['constructor', 100],
      ['__proto__', 2_039],
      ['x'.repeat(1_024), 4_081],
      ['b', 9_000],
      ['ü', 3],
    ];
    for (const [key, size] of writes) {
      memory.put('p.one', key, new Uint8Array(size), 1 << 30);
      lmdb.put('p.one', key, new Uint8Array(size), 1 << 30);
    }
    memory.delete('p.one', 'a');
    lmdb.delete('p.one', 'a');
    const used = memory.usage('p.one');
    expect(lmdb.usage('p.one')).toBe(used);
    // A logical count would be 11 + 1,024 + 2,039 + 100 + ...: every entry costs at least its overhead.
    expect(used).toBeGreaterThan(9_000 + 4_081 + 2_039 + 1_024 + 100 + 6 * 16);
    lmdb.close();
    lmdb = new LmdbStorage(join(data, 'storage'));
    expect(lmdb.usage('p.one')).toBe(used);
    lmdb.close();
  });

  it('keys of any length are listed and counted after a reopen (the first layout lost long keys from scans)', () => {
    const dir = join(dataDir(), 'storage');
    // The first layout, written as the previous LmdbStorage did: ordered-binary string keys.
    const legacy = open({ path: dir, compression: false });
    const old = legacy.openDB<Uint8Array, string>({
      name: 'plugin-storage',
      encoding: 'binary',
      keyEncoding: 'ordered-binary',
    });
    old.putSync(`p.three\0${'k'.repeat(1_024)}`, Buffer.alloc(3_000));
    old.putSync('p.three\0short', Buffer.alloc(10));
    legacy.close();
    const memory = new MemoryStorage();
    memory.put('p.three', 'k'.repeat(1_024), new Uint8Array(3_000), 1 << 30);
    memory.put('p.three', 'short', new Uint8Array(10), 1 << 30);
    let lmdb = new LmdbStorage(dir);
    expect(lmdb.list('p.three', '', 10)).toEqual(['k'.repeat(1_024), 'short']);
    expect(lmdb.usage('p.three')).toBe(memory.usage('p.three'));
    lmdb.put('p.three', 'm'.repeat(1_000), new Uint8Array(5), 1 << 30);
    lmdb.close();
    lmdb = new LmdbStorage(dir);
    expect(lmdb.list('p.three', 'm', 10)).toEqual(['m'.repeat(1_000)]);
    memory.put('p.three', 'm'.repeat(1_000), new Uint8Array(5), 1 << 30);
    expect(lmdb.usage('p.three')).toBe(memory.usage('p.three'));
    lmdb.close();
  });

  it('an entry of any size is refused whole when it would pass the quota', () => {
    const storage = new MemoryStorage();
    let code = 'stored';
    try {
      storage.put('p.two', 'k', new Uint8Array(1), 16);
    } catch (error) {
      code = isReedError(error) ? error.code : String(error);
    }
    expect(code).toBe('storage_quota_exceeded');
    expect(storage.usage('p.two')).toBe(0);
  });
});
