import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CompileCache, cacheKey } from '../../src/cache/compile-cache.js';
import { compileWasm } from '../../src/runtime/wasm/compile-wasm.js';
import { INSTRUMENTER_VERSION, prepareModule } from '../../src/runtime/wasm/prepare-module.js';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

const HELLO = join(REPO, 'examples/plugins/hello/plugin.wasm');
const options = (cache: CompileCache) => ({
  pluginId: 'p',
  memoryMb: 64,
  tableElements: 10_000,
  fuelPerCall: 100_000_000,
  cache,
});
const produce = (bytes: number[]) => async () => ({
  bytes: Uint8Array.from(bytes),
  info: { n: bytes.length },
  compilerVersion: 'test',
});
const key = (s: string) => cacheKey({ s }, new Uint8Array());

describe('compile cache', () => {
  it('keys by content and by every setting that changes the output, never by id or version', () => {
    const bytes = readFileSync(HELLO);
    const base = cacheKey({ fuel: true, memoryCapPages: 1024 }, bytes);
    expect(cacheKey({ memoryCapPages: 1024, fuel: true }, bytes)).toBe(base);
    expect(cacheKey({ fuel: false, memoryCapPages: 1024 }, bytes)).not.toBe(base);
    expect(cacheKey({ fuel: true, memoryCapPages: 1024 }, Buffer.concat([bytes, Buffer.from([0])]))).not.toBe(
      base,
    );
  });

  it('prepares once, then hits, with the seed\u2019s metadata', async () => {
    const cache = new CompileCache({ dir: tempDir() });
    const first = await compileWasm(HELLO, options(cache));
    const second = await compileWasm(HELLO, options(cache));
    expect([first.cacheHit, second.cacheHit]).toEqual([false, true]);
    const meta = JSON.parse(readFileSync(join(cache.dir, `${first.key}.json`), 'utf8'));
    expect(meta).toMatchObject({
      key: first.key,
      compilerVersion: `reed-instrumenter/${INSTRUMENTER_VERSION}`,
    });
    expect(meta.compiledSize).toBeGreaterThan(0);
    expect(typeof meta.compilationTime).toBe('number');
    expect(Date.parse(meta.createdAt)).not.toBeNaN();
  });

  it('prepares the same bytes once per process: a second plugin of one module reads no cache entry', async () => {
    const cache = new CompileCache({ dir: tempDir() });
    const opts = { ...options(cache), fuelPerCall: 200_000_000 }; // a key no other test here prepares
    const first = await compileWasm(HELLO, opts);
    expect(first.cacheHit).toBe(false);
    for (const name of readdirSync(cache.dir)) rmSync(join(cache.dir, name));
    const second = await compileWasm(HELLO, { ...opts, pluginId: 'q' });
    expect(second.cacheHit).toBe(true);
    expect(second.module).toBe(first.module);
    expect(second.exports).toEqual(first.exports);
    expect(readdirSync(cache.dir)).toEqual([]); // nothing read, prepared or written again
    // Other settings are another key: prepared (and written) again.
    expect((await compileWasm(HELLO, { ...opts, fuelPerCall: 300_000_000 })).cacheHit).toBe(false);
    expect(readdirSync(cache.dir).length).toBeGreaterThan(0);
  });

  it('detects a truncated or altered entry and rebuilds it', async () => {
    const cache = new CompileCache({ dir: tempDir() });
    const k = key('a');
    await cache.get(k, produce([1, 2, 3, 4]));
    writeFileSync(join(cache.dir, `${k}.bin`), Uint8Array.from([1, 2]));
    const again = await cache.get(k, produce([1, 2, 3, 4]));
    expect(again.hit).toBe(false);
    writeFileSync(join(cache.dir, `${k}.bin`), Uint8Array.from([9, 9, 9, 9]));
    expect((await cache.get(k, produce([1, 2, 3, 4]))).hit).toBe(false);
    expect((await cache.get(k, produce([1, 2, 3, 4]))).hit).toBe(true);
    writeFileSync(join(cache.dir, `${k}.json`), '{not json');
    expect(Array.from((await cache.get(k, produce([1, 2, 3, 4]))).bytes)).toEqual([1, 2, 3, 4]);
  });

  it('prepares once for concurrent requests of the same key', async () => {
    const cache = new CompileCache({ dir: tempDir() });
    let runs = 0;
    const slow = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 20));
      return { bytes: Uint8Array.from([7]), info: null, compilerVersion: 'test' };
    };
    const k = key('b');
    const results = await Promise.all(Array.from({ length: 8 }, () => cache.get(k, slow)));
    expect(runs).toBe(1);
    expect(results.every((r) => r.bytes[0] === 7)).toBe(true);
  });

  it('stays within its size bound, evicting the least recently used', async () => {
    const cache = new CompileCache({ dir: tempDir(), maxBytes: 250 });
    for (const name of ['a', 'b', 'c', 'd']) await cache.get(key(name), produce(new Array(100).fill(1)));
    const kept = readdirSync(cache.dir).filter((f) => f.endsWith('.bin'));
    expect(kept).toHaveLength(2);
    expect(kept).toContain(`${key('d')}.bin`);
  });

  it('rejects when preparation fails, and caches nothing', async () => {
    const cache = new CompileCache({ dir: tempDir() });
    await expect(cache.get(key('c'), async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect((await cache.get(key('c'), produce([5]))).hit).toBe(false);
  });
});

describe('instrumentation', () => {
  it('keeps the module valid and its behaviour the same, and caps memory without a declared maximum', async () => {
    const bytes = readFileSync(HELLO);
    const prepared = prepareModule(bytes, {
      fuel: true,
      initialFuel: 1000n,
      memoryCapPages: 16,
      tableCapElements: 10,
    });
    expect(WebAssembly.validate(prepared.bytes)).toBe(true);
    const module = new WebAssembly.Module(prepared.bytes);
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    expect(exports).toEqual(expect.arrayContaining(['__reed_fuel', 'echo', 'memory']));
    const plain = prepareModule(bytes, {
      fuel: false,
      initialFuel: 0n,
      memoryCapPages: 16,
      tableCapElements: 10,
    });
    expect(WebAssembly.Module.exports(new WebAssembly.Module(plain.bytes)).map((e) => e.name)).not.toContain(
      '__reed_fuel',
    );
  });
});
