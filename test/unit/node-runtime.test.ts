import { spawnSync } from 'node:child_process';
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readDynamic, sharedLibraries } from '../../src/backends/shared/node-runtime.js';
import { tempDir } from '../helpers/plugin-tree.js';

/** Compiles `source` into a shared object with extra linker arguments; the test machine has cc (setup.sh). */
function sharedObject(dir: string, name: string, source: string, args: string[] = []): string {
  const c = join(dir, `${name}.c`);
  const so = join(dir, `lib${name}.so`);
  writeFileSync(c, source);
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', so, c, ...args], { encoding: 'utf8' });
  expect(cc.stderr).toBe('');
  expect(cc.status).toBe(0);
  return so;
}

describe('the shared libraries of the Node runtime, read from ELF headers (no ldd)', () => {
  it('finds the same files as ldd for the running node binary', () => {
    const ldd = spawnSync('ldd', [process.execPath], { encoding: 'utf8' });
    expect(ldd.status).toBe(0);
    const fromLdd = ldd.stdout
      .split('\n')
      .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
      .filter((p): p is string => p !== undefined);
    const ours = sharedLibraries(process.execPath);
    expect(ours.map((p) => realpathSync(p)).sort()).toEqual(fromLdd.map((p) => realpathSync(p)).sort());
    expect(ours.length).toBeGreaterThan(2);
  });

  it('reads the interpreter and the needed sonames', () => {
    const info = readDynamic(process.execPath);
    expect(info.interpreter).toMatch(/^\/.*ld-linux.*\.so/);
    expect(info.needed).toContain('libc.so.6');
  });

  it('follows DT_RUNPATH with $ORIGIN, transitively', () => {
    const dir = tempDir();
    const libDir = join(dir, 'private');
    mkdirSync(libDir);
    sharedObject(libDir, 'inner', 'int inner(void) { return 7; }\n');
    const outer = sharedObject(dir, 'outer', 'int inner(void);\nint outer(void) { return inner(); }\n', [
      `-L${libDir}`,
      '-linner',
      '-Wl,-rpath,$ORIGIN/private',
      '-Wl,--enable-new-dtags',
    ]);
    expect(readDynamic(outer).runpath).toEqual(['$ORIGIN/private']);
    const libs = sharedLibraries(outer);
    expect(libs).toContain(join(libDir, 'libinner.so'));
  });

  it('names the library it cannot find', () => {
    const dir = tempDir();
    const libDir = join(dir, 'gone');
    mkdirSync(libDir);
    sharedObject(libDir, 'vanished', 'int v(void) { return 1; }\n');
    const needy = sharedObject(dir, 'needy', 'int v(void);\nint n(void) { return v(); }\n', [
      `-L${libDir}`,
      '-lvanished',
    ]);
    expect(() => sharedLibraries(needy)).toThrow(
      expect.objectContaining({
        code: 'runtime_library_missing',
        message: expect.stringContaining('libvanished.so'),
      }),
    );
  });

  it('rejects a file that is not ELF with a typed error', () => {
    const file = join(tempDir(), 'not-elf');
    writeFileSync(file, '#!/bin/sh\necho hi\n');
    expect(() => readDynamic(file)).toThrow(expect.objectContaining({ code: 'runtime_library_missing' }));
  });
});
