import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSoak, soakProblems } from '../../bench/soak.js';

/**
 * Issue 17, part 2 (docs/RELIABILITY.md, "Faults during load"): the data and cache directories full. The server's
 * data_dir (its storage, LMDB) and cache_dir (the compile cache) are on a 16 MiB tmpfs this test mounts (it runs as
 * root, as CI does). Under the soak's checked callers (bench/soak.ts, process mode), the fault fills the tmpfs to
 * its last byte, then: new storage writes (4 KB notes under new keys, once the storage's reserve of written pages is used) fail with `storage_write_failed`, reads of a note written
 * before keep answering, the other plugins keep answering, a runner killed meanwhile restarts and serves though
 * its cache entry cannot be written; once the filler is removed, writes succeed again (recovery printed).
 */
let mount: string;

beforeAll(() => {
  mount = mkdtempSync(join(tmpdir(), 'reed-faults-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', mount]);
  mkdirSync(join(mount, 'data'));
  mkdirSync(join(mount, 'cache'));
  chmodSync(join(mount, 'data'), 0o755);
});

afterAll(() => {
  execFileSync('umount', [mount]);
  rmSync(mount, { recursive: true, force: true });
});

/** Fills the file system under `dir` to its last byte: 1 MiB writes, then smaller ones until ENOSPC. */
function fill(dir: string): void {
  let chunk = 1 << 20;
  let n = 0;
  while (chunk >= 512) {
    try {
      writeFileSync(join(dir, `filler-${n++}`), Buffer.alloc(chunk, 1));
    } catch {
      chunk >>= 1;
    }
  }
}

describe('faults during load: data and cache directories full', () => {
  it('process mode: storage writes fail with a code, reads and other plugins work, writes work again once freed', async () => {
    const notes = 'soak.notes-1';
    // 4 KB values (the notes plugin reads at most 4 KB of input).
    const big = 'x'.repeat(4000);
    let writesFailedAt = -1;
    let readWhileFull = false;
    const result = await runSoak({
      mode: 'process',
      seconds: 30,
      callers: 16,
      plugins: 10,
      warmupFraction: 0.2,
      dataDir: join(mount, 'data'),
      cacheDir: join(mount, 'cache'),
      fault: async (ctx) => {
        await ctx.sleep(3000);
        expect(await ctx.call(notes, 'put', 'before=kept', '')).toBe(true);
        fill(mount);
        ctx.mark('data and cache full', [notes]);
        // New keys with values of many pages each need new pages: past the storage's reserve, one write fails.
        // Eight at a time: the storage's reserve of written pages (lmdb-storage.ts) takes some tens of them.
        for (let i = 0; i < 2000 && writesFailedAt < 0; i += 8) {
          const held = await Promise.all(
            Array.from({ length: 8 }, (_, j) => ctx.call(notes, 'put', `full${i + j}=${big}`, '')),
          );
          if (held.includes(false)) writesFailedAt = i + held.indexOf(false);
        }
        readWhileFull = await ctx.call(notes, 'get', 'before', 'kept');
        // A runner lost while the disk is full restarts (its compile cache entry cannot be written).
        const victim = ctx.runners().find((r) => r.pluginId === 'soak.echo-2');
        if (victim !== undefined) process.kill(victim.pid, 'SIGKILL');
        ctx.mark('runner killed while full', ['soak.echo-2']);
        await ctx.sleep(2000);
        execFileSync('sh', ['-c', `rm -f ${mount}/filler-*`]);
        ctx.mark('space freed', [notes]);
        while (ctx.remainingMs() > 0 && !(await ctx.call(notes, 'put', `after=${big}`, '')))
          await ctx.sleep(100);
      },
    });
    const failedOn = result.perPlugin[notes]?.failed ?? {};
    // biome-ignore lint/suspicious/noConsole: each fault test prints its recovery time (docs/RELIABILITY.md)
    console.log(
      `faults-disk-full: load ${result.loadAverage.toFixed(1)}; the ${writesFailedAt + 1}th new write failed;`,
      `${notes} failures ${JSON.stringify(failedOn)};`,
      result.faults.map((f) => `${f.label}: ${JSON.stringify(f.recoveryMs)}`),
    );
    expect(soakProblems({ ...result, failures: {}, rssGrowth: 0 })).toEqual([]);
    expect(writesFailedAt).toBeGreaterThanOrEqual(0);
    expect(readWhileFull).toBe(true);
    // The storage's own condition, not the plugin's argument (it was invalid_argument before).
    expect(Object.keys(failedOn)).toEqual(['storage_write_failed']);
    // Every notes plugin shares the storage: their writes may fail too, with the same codes. No echo call fails,
    // but the calls in flight on the runner this test kills: those answer `sandbox_crashed`.
    for (const [id, counts] of Object.entries(result.perPlugin)) {
      if (id.startsWith('soak.notes-'))
        for (const code of Object.keys(counts.failed)) expect(failedOn).toHaveProperty(code);
      else if (id === 'soak.echo-2')
        expect(Object.keys(counts.failed).filter((code) => code !== 'sandbox_crashed')).toEqual([]);
      else expect({ id, failed: counts.failed }).toEqual({ id, failed: {} });
    }
    for (const fault of result.faults)
      for (const [id, ms] of Object.entries(fault.recoveryMs))
        expect({ fault: fault.label, id, recovered: ms !== null }).toEqual({
          fault: fault.label,
          id,
          recovered: true,
        });
  }, 300_000);
});
