// The quota's walk (src/runtime/wasm/wasi-quota.ts): each entry charged once, before it is read, at its price (a
// directory's with its size by the byte); a walk stopped by a charge (the call's fuel ran out) goes on from where it
// was, to the same count as a walk in one go. Bytes are the regular files' and every directory's own size.
import { linkSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cPath, loadLibc, O_CLOEXEC, O_DIRECTORY } from '../../src/runtime/libc.js';
import {
  FUEL_PER_DIR_BYTE,
  FUEL_WALK_DIR,
  FUEL_WALK_ENTRY,
  FUEL_WALK_STAT,
  Walk,
  walk,
} from '../../src/runtime/wasm/wasi-quota.js';
import { tempDir } from '../helpers/plugin-tree.js';

const opened: number[] = [];
afterEach(() => {
  for (const fd of opened.splice(0)) loadLibc().close(fd);
});

function open(dir: string): number {
  const fd = loadLibc().openat(-100, cPath(dir), O_DIRECTORY | O_CLOEXEC, 0) as number;
  expect(fd).toBeGreaterThanOrEqual(0);
  opened.push(fd);
  return fd;
}

/**
 * 3 levels of 6 directories (258 in all), a file of 10 bytes in each, hard links and symlinks at the top; `own`:
 * the directories' own sizes, the root's apart.
 */
function tree(): { root: string; dirs: number; files: number; own: number; rootOwn: number } {
  const root = tempDir('reed-wasi-walk-');
  let dirs = 0;
  let files = 0;
  let own = 0;
  const fill = (dir: string, depth: number) => {
    writeFileSync(join(dir, 'file'), '0123456789');
    files++;
    if (depth === 3) return;
    for (let i = 0; i < 6; i++) {
      mkdirSync(join(dir, `sub-${i}`));
      dirs++;
      fill(join(dir, `sub-${i}`), depth + 1);
      own += statSync(join(dir, `sub-${i}`)).size;
    }
  };
  fill(root, 0);
  linkSync(join(root, 'file'), join(root, 'hard')); // a second name of one inode: its bytes once
  symlinkSync('sub-0', join(root, 'link')); // a name, never followed
  return { root, dirs, files, own, rootOwn: statSync(root).size };
}

describe('the quota walk', () => {
  it('charges each entry once, its price by type, and counts each inode once', () => {
    const { root, dirs, files, own, rootOwn } = tree();
    const charges: number[] = [];
    const counted = walk(open(root), { charge: (fuel) => charges.push(fuel), exceeded: () => {} });
    expect(counted.entries).toBe(dirs + files + 2);
    expect(counted.bytes).toBe(files * 10 + own + rootOwn);
    expect(charges).toHaveLength(counted.entries); // one call per entry (src/server/tenant-disk.ts counts them)
    const named = (length: number) => FUEL_WALK_ENTRY + length;
    const total = charges.reduce((a, b) => a + b, 0);
    const least =
      dirs * (named(5) + FUEL_WALK_DIR) +
      own * FUEL_PER_DIR_BYTE +
      (files + 1) * (named(4) + FUEL_WALK_STAT) +
      named(4);
    expect(total).toBeGreaterThanOrEqual(least);
  });

  it('stopped by a charge at any point, goes on to the same count, each entry paid once', () => {
    const { root } = tree();
    const whole = walk(open(root), { charge: () => {}, exceeded: () => {} });
    for (const every of [2, 3, 7, 50]) {
      const counting = new Walk(open(root));
      let paid = 0;
      let calls = 0;
      let stops = 0;
      let result: { bytes: number; entries: number } | undefined;
      const io = {
        charge: () => {
          if (++calls % every === 0) throw new Error('out of fuel');
          paid++;
        },
      };
      while (result === undefined) {
        try {
          result = counting.run(io);
        } catch (error) {
          expect((error as Error).message).toBe('out of fuel');
          stops++;
        }
      }
      counting.close();
      expect(result).toEqual(whole);
      expect(paid).toBe(whole.entries);
      expect(stops).toBeGreaterThan(0);
    }
  });
});
