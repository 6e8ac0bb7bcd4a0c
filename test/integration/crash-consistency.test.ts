// Crash consistency (issue 17, part 3): a process killed with SIGKILL while it writes the host's storage or its
// compile cache leaves nothing half-written that is trusted afterwards. Each writer (test/fixtures/crash/) runs
// the host's own code from dist/ (npm run build) and is killed several times, each time at whatever point of a
// write it has reached after acknowledging a given number of them; after each kill the store is reopened here and
// checked. Installs killed at each step: test/integration/lifecycle-persist.test.ts.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CompileCache, cacheKey } from '../../src/cache/compile-cache.js';
import { LmdbStorage } from '../../src/host/lmdb-storage.js';
import { ownMark, pidNamespaceInode, processStart } from '../../src/process-identity.js';
import { prepareModule } from '../../src/runtime/wasm/prepare-module.js';
import { moduleOf, SLOTS, value, writeOf } from '../fixtures/crash/values.mjs';
import { REPO } from '../helpers/cli.js';
import { lastingDir } from '../helpers/plugin-tree.js';

const CRASH = join(REPO, 'test/fixtures/crash');

/**
 * Runs `script DIR FIRST` until it has acknowledged `acks` writes, then kills it with SIGKILL (it goes on writing
 * until the signal lands). Resolves with the last write it acknowledged.
 */
function runAndKill(script: string, dir: string, first: number, acks: number): Promise<number> {
  const child: ChildProcess = spawn(process.execPath, [join(CRASH, script), dir, String(first)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((resolve, reject) => {
    let last = first - 1;
    let seen = 0;
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() as string;
      for (const line of lines) {
        last = Number(line);
        if (++seen === acks) child.kill('SIGKILL');
      }
    });
    // 'close', not 'exit': every line it printed before the kill is read by then.
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve(last);
      else reject(new Error(`${script} exited with ${code}: ${stderr}`));
    });
  });
}

describe('SIGKILL during storage writes (LmdbStorage)', () => {
  it('every key holds one whole write, never older than the last acknowledged; the store opens and writes', async () => {
    const dir = lastingDir('reed-crash-storage-');
    /** Per slot: the last write acknowledged to it. */
    const acked = new Map<number, number>();
    /** The write each kill may have caught after its put returned but before it was acknowledged. */
    const inFlight = new Set<number>();
    let next = 0;
    for (const acks of [1, 40, 7, 120, 25]) {
      const last = await runAndKill('storage-writer.mjs', dir, next, acks);
      for (let i = next; i <= last; i++) acked.set(i % SLOTS, i);
      inFlight.add(last + 1);
      const storage = new LmdbStorage(dir);
      try {
        for (let slot = 0; slot < SLOTS; slot++) {
          const stored = storage.get('p', `k${slot}`);
          const floor = acked.get(slot);
          // A slot never acknowledged may be empty; one acknowledged holds that write or a later one.
          if (floor !== undefined) expect(stored, `k${slot}`).toBeDefined();
          if (stored === undefined) continue;
          const made = writeOf(stored);
          expect(made, `k${slot} holds exactly one write's value`).toBeDefined();
          expect((made as number) % SLOTS).toBe(slot);
          if (floor !== undefined) expect(made as number).toBeGreaterThanOrEqual(floor);
          // Acknowledged, or the write in flight when one of the kills landed.
          expect((made as number) <= last || inFlight.has(made as number), `k${slot}: write ${made}`).toBe(
            true,
          );
        }
        // The store takes writes again, and its usage counts what it holds.
        storage.put('p', 'after', value(3), 1e12);
        expect(Buffer.from(storage.get('p', 'after') as Uint8Array).equals(value(3))).toBe(true);
        expect(storage.usage('p')).toBeGreaterThan(0);
        storage.delete('p', 'after');
      } finally {
        storage.close();
      }
      next = last + 2; // the write in flight, if it landed, keeps its number
    }
  });
});

describe('SIGKILL during compile-cache writes', () => {
  const OPTIONS = { fuel: true, initialFuel: 1_000_000n, memoryCapPages: 1024, tableCapElements: 1000 };
  const produce = (i: number) => async () => ({
    bytes: prepareModule(moduleOf(i), OPTIONS).bytes,
    info: { i },
    compilerVersion: 'crash-test',
  });

  it('an entry is a hit only when whole; acknowledged ones hit; the rest are prepared again', async () => {
    const dir = lastingDir('reed-crash-cache-');
    let next = 0;
    for (const acks of [1, 6, 2, 10]) {
      const last = await runAndKill('cache-writer.mjs', dir, next, acks);
      const cache = new CompileCache({ dir, maxBytes: 1 << 30 });
      for (let i = next; i <= last + 1; i++) {
        const fresh = await produce(i)();
        const entry = await cache.get(cacheKey({ i }, moduleOf(i)), produce(i));
        // What the cache answers is what preparing answers, hit or not: a torn entry is never served.
        expect(Buffer.from(entry.bytes).equals(Buffer.from(fresh.bytes)), `entry ${i}`).toBe(true);
        if (i <= last) expect(entry.hit, `entry ${i} was acknowledged`).toBe(true);
      }
      // A second reader finds every entry whole now (the torn ones were rebuilt).
      const again = new CompileCache({ dir, maxBytes: 1 << 30 });
      for (let i = next; i <= last + 1; i++)
        expect((await again.get(cacheKey({ i }, moduleOf(i)), produce(i))).hit).toBe(true);
      next = last + 2;
    }
    // Only entries are left: the first use of the cache removed the killed writers' temporary files.
    for (const name of readdirSync(dir)) expect(name).toMatch(/^[0-9a-f]{64}\.(bin|json)$/);
  });

  it("the first use removes the temporary files of a writer that is gone, not a live one's nor another pid namespace's", async () => {
    const dir = lastingDir('reed-crash-cache-tmp-');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid as number;
    const key = 'a'.repeat(64);
    const ns = pidNamespaceInode();
    const parentStart = processStart(process.ppid) as string;
    const dead = [
      `${key}.bin.tmp-h${ns}.${gone}.0-0123abcd`,
      `${key}.json.tmp-h${ns}.${gone}.0-0123abcd`,
      // The parent's pid, but another start time: the writer was a process whose pid was since reused.
      `${key}.bin.tmp-h${ns}.${process.ppid}.${Number(parentStart) + 1}-0123abcd`,
    ];
    const live = [
      `${key}.bin.tmp-${ownMark()}-89abcdef`,
      `${key}.bin.tmp-h${ns}.${process.ppid}.${parentStart}-89abcdef`,
      // A host in another pid namespace (a container sharing the directory): its pids mean nothing here.
      `${key}.bin.tmp-h${Number(ns) + 1}.${gone}.0-89abcdef`,
    ];
    for (const name of [...dead, ...live]) writeFileSync(join(dir, name), 'half');
    const cache = new CompileCache({ dir, maxBytes: 1 << 30 });
    await cache.get(cacheKey({ i: 0 }, moduleOf(0)), produce(0));
    const left = readdirSync(dir);
    for (const name of dead) expect(left).not.toContain(name);
    for (const name of live) expect(left).toContain(name);
  });
});
