import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join, sep } from 'node:path';
import { tempDir } from './plugin-tree.js';

/**
 * Compiles C to a wasm32-wasi module with the project's clang and Debian's wasi-libc (installed by
 * scripts/setup.sh): a command (exports `_start`) unless `reactor`. Throws when clang or wasi-libc is missing.
 */
function systemPath(): string {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((p) => !p.includes(`node_modules${sep}.bin`))
    .join(delimiter);
}

export function buildWasiC(source: string, options: { reactor?: boolean } = {}): Buffer {
  const dir = tempDir('reed-wasm-c-');
  const c = join(dir, 'main.c');
  const out = join(dir, 'main.wasm');
  writeFileSync(c, source);
  execFileSync(
    'clang',
    [
      '--target=wasm32-wasi',
      '-O2',
      '-Wall',
      '-Werror',
      ...(options.reactor === true ? ['-mexec-model=reactor'] : []),
      '-o',
      out,
      c,
    ],
    // Without node_modules/.bin on the PATH: clang runs any wasm-opt it finds there (binaryen's) after linking,
    // which folds and drops functions; the module must be what clang and wasm-ld alone make.
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PATH: systemPath() } },
  );
  return readFileSync(out);
}
