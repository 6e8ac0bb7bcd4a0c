import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { CompileCache, cacheKey, privateDirProblem, sha256 } from '../../src/cache/compile-cache.js';
import type { LogLine } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const KEY = cacheKey({ test: 'cache-trust' }, new Uint8Array([1, 2, 3]));
const GOOD = new Uint8Array([0x00, 0x61, 0x73, 0x6d]);
const PLANTED = new Uint8Array([0xde, 0xad]);

/** Plants an entry with a valid checksum, as anyone who can write the directory could. */
function plant(dir: string): void {
  writeFileSync(join(dir, `${KEY}.bin`), PLANTED);
  writeFileSync(
    join(dir, `${KEY}.json`),
    JSON.stringify({
      key: KEY,
      compiledSize: PLANTED.length,
      compilationTime: 0,
      compilerVersion: 'x',
      createdAt: new Date().toISOString(),
      sha256: sha256(PLANTED),
      info: { planted: true },
    }),
  );
}

function cacheOn(dir: string) {
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => logs.push(JSON.parse(l) as LogLine) });
  const cache = new CompileCache({ dir, logger });
  const get = () =>
    cache.get(KEY, async () => ({ bytes: GOOD, info: { planted: false }, compilerVersion: 'y' }));
  return { get, logs };
}

describe('the compile cache trusts only a directory nobody else can write', () => {
  it.each([
    ['owned by another user', (d: string) => chownSync(d, 65_534, 65_534)],
    ['world-writable', (d: string) => chmodSync(d, 0o777)],
    ['group-writable', (d: string) => chmodSync(d, 0o770)],
  ])('a planted entry in a cache directory %s is never used, nor written to', async (_, weaken) => {
    const dir = join(tempDir('reed-cache-trust-'), 'cache');
    mkdirSync(dir, { mode: 0o700 });
    plant(dir);
    weaken(dir);
    const { get, logs } = cacheOn(dir);
    const entry = await get();
    expect(entry.hit).toBe(false);
    expect([...entry.bytes]).toEqual([...GOOD]);
    expect(logs.some((l) => l.code === 'cache_insecure')).toBe(true);
    expect(privateDirProblem(dir)).toBeDefined();
  });

  it('a cache directory under a parent others can write (not sticky) is not used', async () => {
    const parent = join(tempDir('reed-cache-trust-'), 'shared');
    mkdirSync(parent);
    chmodSync(parent, 0o777);
    const dir = join(parent, 'cache');
    mkdirSync(dir, { mode: 0o700 });
    plant(dir);
    const { get, logs } = cacheOn(dir);
    expect((await get()).hit).toBe(false);
    expect(logs.some((l) => l.code === 'cache_insecure')).toBe(true);
  });

  it('the host’s own private directory (under the sticky /tmp) is used: a second get is a hit', async () => {
    const dir = join(tempDir('reed-cache-trust-'), 'cache');
    const first = cacheOn(dir);
    expect((await first.get()).hit).toBe(false);
    const second = cacheOn(dir);
    expect((await second.get()).hit).toBe(true);
    expect(second.logs.some((l) => l.code === 'cache_insecure')).toBe(false);
  });
});
