// The WASI filesystem against a hostile plugin (docs/SECURITY.md, "The WASI filesystem"): a probe (a C reactor,
// test/fixtures/wasi-fs/probe/plugin.c) makes raw preview1 calls from a script, in mode none, on a directory of its
// own inside a test tree that also holds a file "outside" it. Every way out is tried with openat2 resolving paths and
// with the manual walk used where openat2 is missing; then descriptor limits, quotas and fuel.
import { spawn } from 'node:child_process';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTree } from '../../src/backends/shared/safe-remove.js';
import type { ResolvedLimits } from '../../src/manifest/limits.js';
import { forceManualResolution } from '../../src/runtime/wasm/wasi-path.js';
import type { WasmPlugin } from '../../src/runtime/wasm/wasm-plugin.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { wasiPlugin } from '../helpers/wasi-plugin.js';

const PROBE = join(REPO, 'test/fixtures/wasi-fs/probe/plugin.wasm');
const NOTCAPABLE = 'err 76';

interface Probe {
  plugin: WasmPlugin;
  /** Runs a script (one step per line) and returns the probe's answer, one line per step. */
  run(script: string): string[];
  warnings: { code: string; message: string }[];
}

async function probe(
  hostPath: string,
  fs: { readOnly?: boolean; diskBytes?: number; maxFiles?: number } = {},
  limits: Partial<ResolvedLimits> = {},
): Promise<Probe> {
  const warnings: Probe['warnings'] = [];
  const plugin = await wasiPlugin(PROBE, {
    hostPath,
    ...fs,
    limits,
    warn: (code, message) => warnings.push({ code, message }),
  });
  const run = (script: string) => {
    const { output } = plugin.call('run', Buffer.from(script), performance.now() + 30_000);
    return Buffer.from(output).toString().trimEnd().split('\n');
  };
  return { plugin, run, warnings };
}

/** A tree: `outside/` (a secret and a victim file) beside `root/` (the plugin's directory). */
function tree(): { top: string; root: string; outside: string } {
  const top = tempDir('reed-wasi-fs-');
  const root = join(top, 'root');
  const outside = join(top, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'OUTSIDE');
  writeFileSync(join(outside, 'victim'), 'intact');
  return { top, root, outside };
}

/** This process's descriptors open on something under `dir` (what the WASI filesystem opened there). */
function hostFdsIn(dir: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {} // closed between the listing and the read
  }
  return n;
}

describe.each([
  ['openat2', false],
  ['the manual walk', true],
] as const)('paths cannot leave the directory (resolved by %s)', (_how, manual) => {
  beforeAll(() => forceManualResolution(manual));
  afterAll(() => forceManualResolution(false));

  it('`..` and absolute paths are ENOTCAPABLE for every path call', async () => {
    const { root } = tree();
    mkdirSync(join(root, 'a'));
    writeFileSync(join(root, 'f'), 'inside');
    const p = await probe(root);
    expect(
      p.run(
        [
          'open 3 .. d',
          'open 3 ../outside/secret r',
          'open 3 a/../../outside/secret r',
          'open 3 /etc/passwd r',
          'stat 3 /',
          'stat 3 .. f',
          'mkdir 3 ../x',
          'unlink 3 ../outside/victim',
          'rmdir 3 ..',
          'open 3 a/../f r',
        ].join('\n'),
      ),
    ).toEqual([
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      'fd 4',
    ]);
  });

  it('symlinks to /, to ../.. and to /proc magic links are never followed out; the plugin cannot make one', async () => {
    const { root, outside } = tree();
    symlinkSync('/', join(root, 'toroot'));
    symlinkSync('../..', join(root, 'up'));
    symlinkSync('/proc/self/root', join(root, 'proc'));
    symlinkSync('../../../../../../../../proc/self/root', join(root, 'relproc'));
    symlinkSync(join(outside, 'secret'), join(root, 'secret-link'));
    mkdirSync(join(root, 'in'));
    symlinkSync('in', join(root, 'in-link'));
    const p = await probe(root);
    expect(
      p.run(
        [
          'open 3 toroot/etc/passwd rf',
          'stat 3 toroot f',
          'open 3 up/outside/secret rf',
          'open 3 proc/etc/passwd rf',
          'open 3 relproc/etc/passwd rf',
          'open 3 secret-link rf',
          'open 3 secret-link r',
          'symlink / 3 l1',
          'symlink /proc/self/root 3 l2',
          'open 3 in-link/ d',
          'stat 3 toroot',
        ].join('\n'),
      ),
    ).toEqual([
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      NOTCAPABLE,
      'err 32', // not following the last component: ELOOP, as O_NOFOLLOW answers
      NOTCAPABLE,
      NOTCAPABLE,
      'fd 4', // a symlink that stays inside is followed
      'type 7 size 1', // the link itself, not followed
    ]);
  });

  it('hard links and renames cannot name anything outside, at either end', async () => {
    const { root, outside } = tree();
    writeFileSync(join(root, 'f'), 'inside');
    symlinkSync('../..', join(root, 'up'));
    const p = await probe(root);
    expect(
      p.run(
        [
          'link 3 ../outside/victim 3 x',
          'link 3 /etc/passwd 3 x',
          'link 3 up/outside/victim 3 x',
          'link 3 f 3 ../outside/f',
          'rename 3 f 3 ../f',
          'rename 3 f 3 /tmp/f',
          'rename 3 f 3 up/f',
          'rename 3 ../outside/victim 3 mine',
        ].join('\n'),
      ),
    ).toEqual(Array(8).fill(NOTCAPABLE));
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('intact');
    expect(readFileSync(join(root, 'f'), 'utf8')).toBe('inside');
  });

  it('O_TRUNC of a file outside: it cannot be linked in, and a symlink placed to it is not followed out', async () => {
    const { root, outside } = tree();
    symlinkSync(join(outside, 'victim'), join(root, 'abs-link'));
    symlinkSync('../outside/victim', join(root, 'rel-link'));
    const p = await probe(root);
    expect(
      p.run(
        [
          'link 3 ../outside/victim 3 v',
          'open 3 abs-link ftw',
          'open 3 rel-link ftw',
          'open 3 rel-link tw',
        ].join('\n'),
      ),
    ).toEqual([NOTCAPABLE, NOTCAPABLE, NOTCAPABLE, 'err 32']);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('intact');
  });

  it('a directory descriptor moved out of the directory (by someone else) cannot be climbed out of', async () => {
    const { root, outside } = tree();
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    const p = await probe(root);
    expect(p.run('open 3 a/b d')).toEqual(['fd 4']);
    renameSync(join(root, 'a', 'b'), join(outside, 'b'));
    expect(
      p.run(['open 4 .. d', 'open 4 ../secret r', 'stat 4 ../secret', 'mkdir 4 ../../x'].join('\n')),
    ).toEqual(Array(4).fill(NOTCAPABLE));
  });

  it('a symlink swapped in and out during the call never lets a read reach outside', async () => {
    const { root, outside } = tree();
    mkdirSync(join(root, 'real'));
    writeFileSync(join(root, 'real', 'secret'), 'INSIDE');
    symlinkSync(outside, join(root, 'abs'));
    symlinkSync('../outside', join(root, 'rel'));
    // Another process swaps root/sw between the real directory and each symlink as fast as it can.
    const swapper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs'); const r = ${JSON.stringify(root)};
         const end = Date.now() + 60000;
         process.stdout.write('swapping\\n');
         while (Date.now() < end) for (const n of ['real', 'abs', 'rel']) {
           try { fs.renameSync(r + '/' + n, r + '/sw'); fs.renameSync(r + '/sw', r + '/' + n); } catch {}
         }`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await new Promise((resolve) => swapper.stdout.once('data', resolve));
      // 20,000 opens, reads and closes: ~3G fuel at what each costs (FUEL_PER_PATH_OP, FUEL_PER_FS_OP).
      const p = await probe(root, {}, { fuelPerCall: 10_000_000_000 });
      const [answer] = p.run('race 3 sw/secret 20000');
      expect(answer).toMatch(/^leaks 0 opens \d+$/);
    } finally {
      swapper.kill('SIGKILL');
    }
  });
});

describe('descriptors', () => {
  it('a plugin opens at most 1,024 (EMFILE past it), and every host descriptor is closed when the instance goes, after a trap too', async () => {
    const { root } = tree();
    const p = await probe(root, {}, { fuelPerCall: 500_000_000 });
    expect(p.run('openmany 3 .')).toEqual(['opened 1020 err 33']); // 1,024 less stdio and the preopen
    expect(hostFdsIn(root)).toBe(1022); // those, the preopen's own and the directory's
    // Out of fuel in a readdir loop: the instance is dropped, and with it every descriptor it held.
    expect(() => p.run('spinls 3')).toThrow(expect.objectContaining({ code: 'fuel_exhausted' }));
    expect(hostFdsIn(root)).toBe(0);
    expect(p.run('openmany 3 .')).toEqual(['opened 1020 err 33']); // a fresh instance, a fresh table
    p.plugin.deactivate();
    expect(hostFdsIn(root)).toBe(0);
  });

  it('a huge directory is read in full through a small buffer, following the cookies', async () => {
    const { root } = tree();
    mkdirSync(join(root, 'big'));
    for (let i = 0; i < 20_000; i++) writeFileSync(join(root, 'big', `entry-with-a-longish-name-${i}`), '');
    // 4,000 fd_readdir calls of 5 entries, then 17 of 64 KiB: ~5.5G fuel at their prices (FUEL_PER_READDIR a call,
    // FUEL_PER_DIRENT an entry), which is what the host's work costs.
    const p = await probe(root, {}, { fuelPerCall: 20_000_000_000 });
    expect(p.run(['open 3 big d', 'ls 4 300', 'ls 4 65536'].join('\n'))).toEqual([
      'fd 4',
      'entries 20000',
      'entries 20000',
    ]);
  });

  it('a tree 3,000 deep is made and counted (by descriptor, two host descriptors at a time)', async () => {
    const { root } = tree();
    // 3,000 mkdirs and opens, each a path operation (~1.2G fuel): more than the default fuel_per_call.
    const p = await probe(root, {}, { fuelPerCall: 4_000_000_000 });
    expect(p.run('deep 3 3000')).toEqual(['ok 3000']);
    // A new instance with a file quota counts what is there: 3,000 directories, so 5 more names fit in 3,005. The
    // count (FUEL_WALK_DIR each, 1.6G in all) is more than one call's default fuel: the first call runs out in it,
    // and the next goes on from where it stopped.
    const counted = await probe(root, { maxFiles: 3_005 });
    expect(() => counted.run('files 3 10 f')).toThrow(expect.objectContaining({ code: 'fuel_exhausted' }));
    expect(counted.run('files 3 10 f')).toEqual(['err 19 at 5']);
    // Deeper than PATH_MAX: the test tree's own clean-up (rmSync) could not remove it; the one delete can.
    expect(await removeTree(root)).toBe(true);
  });
});

describe('quotas', () => {
  const MiB = 1024 * 1024;

  it('many small files: the file quota answers EDQUOT and is reported as file_quota_exceeded', async () => {
    const { root } = tree();
    const p = await probe(root, { maxFiles: 50 });
    expect(p.run(['files 3 100 f', 'mkdir 3 d', 'symlink f0 3 l', 'link 3 f0 3 h'].join('\n'))).toEqual([
      'err 19 at 50',
      'err 19',
      'err 19',
      'err 19',
    ]);
    expect(p.warnings.map((w) => w.code)).toEqual(['file_quota_exceeded']);
    expect(p.run(['unlink 3 f0', 'mkdir 3 d'].join('\n'))).toEqual(['ok', 'ok']); // a name given back
  });

  it('a sparse write far past the end, fd_allocate and a truncate that extends are charged their whole size', async () => {
    const { root } = tree();
    const p = await probe(root, { diskBytes: MiB });
    const left = MiB - statSync(root).size; // the directory's own size counts too
    expect(
      p.run(
        [
          'open 3 s cw',
          'pwrite 4 10000000 1',
          'alloc 4 0 2000000',
          'size 4 2000000',
          'size 4 900000',
          'pwrite 4 900000 65536',
          `pwrite 4 1000000 ${left - 1_000_000 + 1}`,
          `pwrite 4 1000000 ${left - 1_000_000}`,
          'size 4 0',
          `alloc 4 0 ${left}`,
        ].join('\n'),
      ),
    ).toEqual([
      'fd 4',
      'err 19',
      'err 19',
      'err 19',
      'ok',
      'n 65536',
      'err 19',
      `n ${left - 1_000_000}`,
      'ok',
      'ok',
    ]);
    expect(p.warnings.map((w) => w.code)).toEqual(['disk_quota_exceeded']);
  });

  it('counts what the directory already holds, and gives back what is unlinked', async () => {
    const { root } = tree();
    writeFileSync(join(root, 'old'), Buffer.alloc(900_000));
    const p = await probe(root, { diskBytes: 1_000_000 });
    expect(p.run(['open 3 n cw', 'size 4 200000', 'unlink 3 old', 'size 4 200000'].join('\n'))).toEqual([
      'fd 4',
      'err 19',
      'ok',
      'ok',
    ]);
  });

  it('through a host in mode none, reported with its code even for a plugin without permissions.log', async () => {
    const plugins = tempDir('reed-wasi-fs-plugins-');
    writePlugin(
      plugins,
      'probe.quota',
      { id: 'probe.quota', permissions: { filesystem: 'readwrite' }, limits: { disk_mb: 1 } },
      { 'plugin.wasm': readFileSync(PROBE) },
    );
    const { host, logs } = await startHost([plugins], {
      reedToml: '[policy.permissions]\nfilesystem = "readwrite"\n',
    });
    try {
      const { output } = await host.call('probe.quota', 'run', 'open 3 big cw\nsize 4 2000000');
      expect(Buffer.from(output).toString()).toBe('fd 4\nerr 19\n');
      expect(logs.filter((l) => l.code === 'disk_quota_exceeded')).toEqual([
        expect.objectContaining({ pluginId: 'probe.quota', level: 40 }),
      ]);
    } finally {
      await host.close();
    }
  });

  it('is shared by two instances of the same directory', async () => {
    const { root } = tree();
    const a = await probe(root, { diskBytes: 1_000_000 });
    const b = await probe(root, { diskBytes: 1_000_000 });
    expect(a.run(['open 3 a cw', 'size 4 600000'].join('\n'))).toEqual(['fd 4', 'ok']);
    expect(b.run(['open 3 b cw', 'size 4 600000', 'size 4 300000'].join('\n'))).toEqual([
      'fd 4',
      'err 19',
      'ok',
    ]);
    truncateSync(join(root, 'a'), 0); // an operator's change is not seen until the count is made again
  });
});

describe('read-only and fuel', () => {
  it('a read-only directory answers EROFS to every change, and reads', async () => {
    const { root } = tree();
    writeFileSync(join(root, 'f'), 'content');
    const p = await probe(root, { readOnly: true });
    expect(
      p.run(
        [
          'open 3 f r',
          'read 4 100',
          'open 3 g cw',
          'open 3 f w',
          'open 3 f t',
          'mkdir 3 d',
          'unlink 3 f',
          'rename 3 f 3 g',
          'symlink f 3 l',
          'link 3 f 3 h',
        ].join('\n'),
      ),
    ).toEqual(['fd 4', 'data content', ...Array(8).fill('err 69')]);
    expect(readFileSync(join(root, 'f'), 'utf8')).toBe('content');
  });

  it('a write loop and a readdir loop are stopped by fuel', async () => {
    const { root } = tree();
    const p = await probe(root, {}, { fuelPerCall: 20_000_000 });
    expect(p.run('open 3 w cw')).toEqual(['fd 4']);
    expect(() => p.run('spinwrite 4')).toThrow(expect.objectContaining({ code: 'fuel_exhausted' }));
    expect(() => p.run('spinls 3')).toThrow(expect.objectContaining({ code: 'fuel_exhausted' }));
  });

  it('poll_oneoff: relative and absolute clocks, realtime and monotonic; a descriptor is ready at once, a closed one EBADF', async () => {
    const { root } = tree();
    writeFileSync(join(root, 'f'), 'hello');
    const p = await probe(root);
    expect(
      p.run(
        [
          'poll 1000000',
          'poll 1000000 r',
          'poll 1000000 a',
          'poll 1000000 ar',
          'poll 0 a',
          'open 3 f r',
          // A minute on the clock, but the file is ready: the call answers at once (the deadline is 30 s).
          'poll 60000000000 - 4',
          'poll 60000000000 - 99',
        ].join('\n'),
      ),
    ).toEqual([
      'events 1 1/0/0/0',
      'events 1 1/0/0/0',
      'events 1 1/0/0/0',
      'events 1 1/0/0/0',
      'events 1 1/0/0/0',
      'fd 4',
      'events 1 2/1/0/5',
      'events 1 2/1/8/0',
    ]);
  });

  it('a sleep costs the same fuel however long it is', async () => {
    const { root } = tree();
    const p = await probe(root);
    const fuel = (ns: number) =>
      p.plugin.call('run', Buffer.from(`sleep ${ns}`), performance.now() + 30_000).fuelConsumed;
    expect(fuel(10_000_000)).toBe(fuel(90_000_000)); // the same digits: the same guest work
  });

  it('proc_raise: a signal ignored by default does nothing, another ends the run with 128 + the signal', async () => {
    const { root } = tree();
    const p = await probe(root);
    expect(p.run(['raise 0', 'raise 17', 'raise 99'].join('\n'))).toEqual(['ok', 'ok', 'err 28']);
    expect(() => p.run('raise 6')).toThrow(
      expect.objectContaining({ code: 'plugin_error', details: { status: 134 } }),
    );
  });

  it('a sleep is bounded by the call deadline', async () => {
    const { root } = tree();
    const p = await probe(root);
    expect(p.run('sleep 1000000')).toEqual(['events 1']);
    expect(() => p.plugin.call('run', Buffer.from('sleep 60000000000'), performance.now() + 200)).toThrow(
      expect.objectContaining({ code: 'call_timeout' }),
    );
  });
});
