// Builds every plugin and fixture under examples/ and test/fixtures/ from its sources, by convention:
//   *.wat                 -> the .wasm named on its `;; out: NAME` line (default: same name), with wabt
//   plugin.c              -> plugin.wasm, a WASI reactor (clang --target=wasm32-wasi, include/ on the path)
//   main.c                -> plugin.wasm, a WASI command (exports _start)
//   assembly/index.ts     -> plugin.wasm, with AssemblyScript and sdk/assemblyscript
// Sources live in git; outputs do not. The set-up installs clang, lld and wasi-libc.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import wabtFactory from 'wabt';

const roots = ['examples', 'test/fixtures', 'bench/fixtures'];
const wabt = await wabtFactory();
const clang = ['--target=wasm32-wasi', '-O2', '-Iinclude', '-Wall', '-Werror'];
const counts = { wat: 0, c: 0, as: 0 };

function* walk(dir) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names.sort()) {
    const path = join(dir, name);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) yield* walk(path);
    else yield path;
  }
}

const run = (cmd, args) => {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    process.stderr.write(`build-plugins: ${cmd} ${args.join(' ')} failed\n`);
    throw error;
  }
};

for (const root of roots) {
  for (const file of walk(root)) {
    const dir = dirname(file);
    if (file.endsWith('.wat')) {
      const text = readFileSync(file, 'utf8');
      const out =
        /^;; out: (\S+)/.exec(text)?.[1] ??
        file
          .replace(/\.wat$/, '.wasm')
          .split('/')
          .pop();
      const module = wabt.parseWat(file, text, {
        multi_value: true,
        bulk_memory: true,
        exceptions: true,
        tail_call: true,
      });
      writeFileSync(join(dir, out), module.toBinary({}).buffer);
      module.destroy();
      counts.wat++;
    } else if (file.endsWith('/plugin.c')) {
      run('clang', [...clang, '-mexec-model=reactor', '-o', join(dir, 'plugin.wasm'), file]);
      counts.c++;
    } else if (file.endsWith('/main.c')) {
      run('clang', [...clang, '-o', join(dir, 'plugin.wasm'), file]);
      counts.c++;
    } else if (file.endsWith('/assembly/index.ts')) {
      const asc = join('node_modules', '.bin', 'asc');
      run(asc, [file, '--outFile', join(dirname(dir), 'plugin.wasm'), '--optimize', '--use', 'abort=']);
      counts.as++;
    }
  }
}
process.stderr.write(`build-plugins: ${counts.wat} WAT, ${counts.c} C, ${counts.as} AssemblyScript\n`);
