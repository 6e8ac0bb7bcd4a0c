// Discovery on worker threads (src/discovery/parallel.ts) gives exactly what discovery on the calling thread gives.
// The workers run the built module (dist/), as the host does: `npm run build` first.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { DiscoveryResult } from '../../src/discovery/discover.js';
import { EMPTY_WASM, manifestToml, tempDir, writePlugin } from '../helpers/plugin-tree.js';

const dist = '../../dist/src/discovery';
const { discoverPlugins, discoverPluginsOffThread } = (await import(
  `${dist}/discover.js`
)) as typeof import('../../src/discovery/discover.js');
const { closeParallelWorkers, keptParallelWorkers, lastParallelRun, runInParallel, runOffThread } =
  (await import(`${dist}/parallel.js`)) as typeof import('../../src/discovery/parallel.js');

/** A search path of every kind of entry discovery meets: valid, broken and hostile plugins, and what is not one. */
function mixedTree(root: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const name = `p${String(i).padStart(4, '0')}`;
    switch (i % 12) {
      case 0:
        writePlugin(root, name, '[metadata\nid = "broken"'); // TOML syntax error
        break;
      case 1:
        writePlugin(root, name, { id: `t.${i}`, metadata: { priority: 'high' } }); // schema error
        break;
      case 2:
        mkdirSync(join(root, name)); // not a plugin directory
        break;
      case 3:
        writeFileSync(join(root, name), 'a file, not a directory');
        break;
      case 4:
        symlinkSync(join(root, `p${String(i - 1).padStart(4, '0')}`), join(root, name)); // a link to a file
        break;
      case 5: {
        // A link to a plugin directory already found: the same plugin, once.
        writePlugin(root, `${name}-real`, { id: `t.${i}` });
        symlinkSync(join(root, `${name}-real`), join(root, name));
        break;
      }
      case 6: {
        // plugin.toml linked from outside the plugin: refused unread.
        const outside = join(root, '..', `outside-${i}.toml`);
        writeFileSync(outside, manifestToml({ id: `t.${i}` }));
        const dir = join(root, name);
        mkdirSync(dir);
        symlinkSync(outside, join(dir, 'plugin.toml'));
        writeFileSync(join(dir, 'plugin.wasm'), EMPTY_WASM);
        break;
      }
      case 7:
        // Values a copy between threads could change: a date, an empty table, `__proto__` keys, nested tables.
        writePlugin(
          root,
          name,
          `[metadata]\nid = "t.${i}"\nname = "n"\nversion = "1.0.0"\napi_version = "1.0.0"\n\n` +
            (i % 24 === 7
              ? `[configuration]\nwhen = 1979-05-27T07:32:00\nday = 1979-05-27\n`
              : `[configuration]\n"__proto__" = { polluted = true }\nlist = [{ a = 1 }, { b = [1.5, inf, -0.0] }]\n\n[configuration.nested.deeper]\nx = "y"\n\n[wasi.env]\n__proto__ = "x"\n`),
        );
        break;
      case 8:
        writePlugin(
          root,
          name,
          `[metadata]\nid = "t.${i}"\nname = "n"\nversion = "1.0.0"\napi_version = "1.0.0"\n\n[configuration]\n`,
        );
        break;
      case 9:
        // The same id twice in one search path: both invalid.
        writePlugin(root, name, { id: 'twice' });
        break;
      case 10:
        writePlugin(root, name, { id: `t.${i}` }, { 'plugin.wasm': EMPTY_WASM, 'odd\u0001name': 'x' });
        break;
      default:
        writePlugin(root, name, {
          id: `t.${i}`,
          priority: i % 5,
          requirements: { dependencies: [{ id: `t.${i - 1}`, version: '^1' }] },
        });
    }
  }
  writePlugin(root, '.hidden', { id: 'hidden' });
}

function tree(count: number): string[] {
  const base = tempDir();
  const first = join(base, 'first');
  const second = join(base, 'second');
  mkdirSync(first);
  mkdirSync(second);
  mixedTree(first, count);
  mixedTree(second, 30); // copies of some ids: shadowed
  writeFileSync(join(first, 'plugin.toml'), manifestToml({ id: 'at-root' })); // the search path itself
  writeFileSync(join(first, 'plugin.wasm'), EMPTY_WASM);
  return [first, second, join(base, 'missing')];
}

describe('discovery on worker threads', () => {
  it('finds the same candidates, diagnostics and order as the calling thread alone', () => {
    const searchPaths = tree(260);
    const alone: DiscoveryResult = discoverPlugins({ searchPaths, workers: 0 });
    expect(lastParallelRun.workers).toBe(0);
    // The calling thread leaves every plugin directory to the workers, so what they found is what is compared.
    const shared: DiscoveryResult = discoverPlugins({
      searchPaths,
      workers: 2,
      parallelFrom: 1,
      callerWorks: false,
    });
    expect(lastParallelRun.workers).toBe(2);
    expect(lastParallelRun.byWorkers).toBe(lastParallelRun.chunks);
    expect(lastParallelRun.chunks).toBeGreaterThan(4);
    // Deep and strict: values, order, and prototypes (TOML tables have none) alike.
    expect(isDeepStrictEqual(shared, alone)).toBe(true);
    expect(shared).toStrictEqual(alone);
    // The tree holds what it should: the cases above all came through.
    const codes = new Set(alone.candidates.flatMap((c) => c.diagnostics.map((d) => d.code)));
    for (const code of ['manifest_syntax', 'symlink_escape', 'duplicate_id', 'file_name_invalid']) {
      expect(codes).toContain(code);
    }
    const dated = alone.candidates.find((c) => c.manifest?.configuration.when !== undefined);
    expect(dated?.manifest?.configuration.when).toBeInstanceOf(Date);
    const polluted = alone.candidates.find(
      (c) =>
        c.manifest !== undefined &&
        Object.getOwnPropertyDescriptor(c.manifest.wasi.env, '__proto__')?.value === 'x',
    );
    expect(Object.hasOwn(polluted?.manifest?.configuration ?? {}, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(polluted?.manifest?.configuration)).toBe(null);
    expect(alone.candidates.filter((c) => c.status === 'shadowed').length).toBeGreaterThan(5);
  });

  it('shares the work when the calling thread works too, with the same result', () => {
    const searchPaths = tree(200);
    const alone = discoverPlugins({ searchPaths, workers: 0 });
    const shared = discoverPlugins({ searchPaths, workers: 1, parallelFrom: 1 });
    expect(lastParallelRun.workers).toBe(1);
    expect(shared).toStrictEqual(alone);
  });

  it('redoes on the calling thread what a worker failed or could not send', () => {
    const jobs = Array.from({ length: 200 }, (_, i) => i);
    const results = runInParallel({
      jobs,
      context: undefined,
      run: (n: number) => n * n,
      workerUrl: new URL('../fixtures/parallel/square-worker.mjs', import.meta.url),
      workers: 1,
      callerWorks: false,
    });
    expect(results).toEqual(jobs.map((n) => n * n));
    expect(lastParallelRun.workers).toBe(1);
    // The chunk holding 13 failed in the worker and was redone here.
    expect(lastParallelRun.byWorkers).toBe(lastParallelRun.chunks - 1);
  });

  it('runs everything on the calling thread below the threshold, and when the worker module is missing', () => {
    const searchPaths = tree(40);
    const alone = discoverPlugins({ searchPaths, workers: 0 });
    expect(discoverPlugins({ searchPaths, workers: 2 })).toStrictEqual(alone);
    expect(lastParallelRun.workers).toBe(0);
    const results = runInParallel({
      jobs: Array.from({ length: 300 }, (_, i) => i),
      context: undefined,
      run: (n: number) => n + 1,
      workerUrl: new URL('../fixtures/parallel/no-such-worker.mjs', import.meta.url),
      workers: 2,
      callerWorks: false,
    });
    expect(results[299]).toBe(300);
    expect(lastParallelRun.workers).toBe(0);
  });

  it('keeps its workers between runs, with the same results, until closed', () => {
    const searchPaths = tree(120);
    const alone = discoverPlugins({ searchPaths, workers: 0 });
    closeParallelWorkers();
    expect(keptParallelWorkers()).toBe(0);
    const options = { searchPaths, workers: 1, parallelFrom: 1, callerWorks: false };
    expect(discoverPlugins(options)).toStrictEqual(alone);
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    expect(keptParallelWorkers()).toBe(1);
    // The kept worker serves the next run (a new one each time would be fresh), and everything is still its work.
    for (let i = 0; i < 2; i++) {
      expect(discoverPlugins(options)).toStrictEqual(alone);
      expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 0 });
      expect(lastParallelRun.byWorkers).toBe(lastParallelRun.chunks);
    }
    closeParallelWorkers();
    expect(keptParallelWorkers()).toBe(0);
    expect(discoverPlugins(options)).toStrictEqual(alone);
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    closeParallelWorkers();
  });

  it('replaces a kept worker that exited, and loses nothing to one not yet known to have', async () => {
    const jobs = Array.from({ length: 300 }, (_, i) => i);
    const options = {
      jobs,
      context: undefined,
      run: (n: number) => n * 3,
      workerUrl: new URL('../fixtures/parallel/once-worker.mjs', import.meta.url),
      workers: 1,
    };
    expect(runInParallel({ ...options, callerWorks: false })).toEqual(jobs.map((n) => n * 3));
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    // Its exit is not yet seen (the event loop has not turned): the run goes to it, and this thread does all of it.
    expect(runInParallel(options)).toEqual(jobs.map((n) => n * 3));
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 0, byWorkers: 0 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Once seen, the dead worker is not used: a new one serves the run.
    expect(runInParallel({ ...options, callerWorks: false })).toEqual(jobs.map((n) => n * 3));
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    closeParallelWorkers();
  });
});

describe("discovery off the calling thread (an install's scan on a serving host)", () => {
  it('finds what the calling thread alone finds, with the event loop turning while the worker walks', async () => {
    const searchPaths = tree(260);
    const alone = discoverPlugins({ searchPaths, workers: 0 });
    closeParallelWorkers();
    let turns = 0;
    let scanning = true;
    const tick = () => {
      turns++;
      if (scanning) setImmediate(tick);
    };
    setImmediate(tick);
    const off = await discoverPluginsOffThread({ searchPaths });
    scanning = false;
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    expect(lastParallelRun.chunks).toBeGreaterThan(4);
    expect(lastParallelRun.byWorkers).toBe(lastParallelRun.chunks);
    expect(turns).toBeGreaterThan(0);
    // Deep and strict, prototypes included; the candidates a worker cannot carry (a TOML date, an empty table) were
    // redone on this thread.
    expect(isDeepStrictEqual(off, alone)).toBe(true);
    expect(off).toStrictEqual(alone);
    // Its worker is kept, and serves the next run (one plugin directory: a single job is still given to it).
    expect(keptParallelWorkers()).toBe(1);
    const one = [join(searchPaths[0] as string, 'p0011')];
    const oneAlone = discoverPlugins({ searchPaths: one, workers: 0 });
    expect(await discoverPluginsOffThread({ searchPaths: one })).toStrictEqual(oneAlone);
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 0, chunks: 1, byWorkers: 1 });
    closeParallelWorkers();
  });

  it('does here what its worker failed, could not send, or left by exiting, and everything without one', async () => {
    const jobs = Array.from({ length: 200 }, (_, i) => i);
    const squares = await runOffThread({
      jobs,
      context: undefined,
      run: (n: number) => n * n,
      workerUrl: new URL('../fixtures/parallel/square-worker.mjs', import.meta.url),
      workers: 1,
    });
    expect(squares).toEqual(jobs.map((n) => n * n));
    expect(lastParallelRun.byWorkers).toBe(lastParallelRun.chunks - 1);
    const once = {
      jobs,
      context: undefined,
      run: (n: number) => n * 3,
      workerUrl: new URL('../fixtures/parallel/once-worker.mjs', import.meta.url),
      workers: 1,
    };
    expect(await runOffThread(once)).toEqual(jobs.map((n) => n * 3));
    expect(lastParallelRun).toMatchObject({ workers: 1, fresh: 1 });
    // The kept worker exits after its one run: whether that is seen before the next run or during it, the run
    // is answered in full.
    expect(await runOffThread(once)).toEqual(jobs.map((n) => n * 3));
    expect(await runOffThread(once)).toEqual(jobs.map((n) => n * 3));
    const missing = await runOffThread({
      ...once,
      workerUrl: new URL('../fixtures/parallel/no-such-worker.mjs', import.meta.url),
    });
    expect(missing).toEqual(jobs.map((n) => n * 3));
    expect(lastParallelRun.workers).toBe(0);
    expect(await runOffThread({ ...once, workers: 0 })).toEqual(jobs.map((n) => n * 3));
    expect(await runOffThread({ ...once, jobs: [] })).toEqual([]);
    closeParallelWorkers();
  });
});
