// Builds every plugin and fixture under examples/ and test/fixtures/ from its sources, by convention:
//   *.wat                 -> the .wasm named on its `;; out: NAME` line (default: same name), with wabt
//   plugin.c              -> plugin.wasm, a WASI reactor (clang --target=wasm32-wasi, include/ on the path)
//   main.c                -> plugin.wasm, a WASI command (exports _start)
//   assembly/index.ts     -> plugin.wasm, with AssemblyScript and sdk/assemblyscript
//   native.c              -> plugin.so, a native plugin (cc -shared, include/ on the path)
//   wasi-testsuite/c/X.c  -> X.wasm, the official WASI test suite's C programs (WASI commands, built as they are)
// Then the example plugins that need a signature are signed with a development key made here
// (examples/keys/, not in git), which examples/reed-trusted.toml trusts.
// Sources live in git; outputs do not. The set-up installs clang, lld and wasi-libc.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import wabtFactory from 'wabt';

const roots = ['examples', 'test/fixtures', 'bench/fixtures'];
const wabt = await wabtFactory();
const clang = ['--target=wasm32-wasi', '-O2', '-Iinclude', '-Wall', '-Werror'];
const counts = { wat: 0, c: 0, as: 0, native: 0 };

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
    } else if (/\/wasi-testsuite\/c\/[^/]+\.c$/.test(file)) {
      // Third-party sources, not ours: no -Werror (one has an unused variable), nothing of include/.
      run('clang', ['--target=wasm32-wasi', '-O2', '-o', file.replace(/\.c$/, '.wasm'), file]);
      counts.c++;
    } else if (file.endsWith('/native.c')) {
      run('cc', [
        '-shared',
        '-fPIC',
        '-O2',
        '-Wall',
        '-Werror',
        '-Iinclude',
        '-o',
        join(dir, 'plugin.so'),
        file,
      ]);
      counts.native++;
    } else if (file.endsWith('/assembly/index.ts')) {
      const asc = join('node_modules', '.bin', 'asc');
      run(asc, [file, '--outFile', join(dirname(dir), 'plugin.wasm'), '--optimize', '--use', 'abort=']);
      counts.as++;
    }
  }
}

// Sign the native examples with the examples' development key (dist/ must be built: `npm run build` is).
const { generateSigningKey, readPrivateKey, signPlugin, SIGNATURE_FILE } = await import(
  '../dist/src/signing/signature.js'
);
const { inventoryPlugin, DEFAULT_FILE_LIMITS } = await import('../dist/src/discovery/plugin-inventory.js');
const keyFile = 'examples/keys/examples.key';
if (!existsSync(keyFile)) {
  mkdirSync('examples/keys', { recursive: true, mode: 0o700 });
  const key = generateSigningKey();
  writeFileSync(keyFile, key.privatePem, { mode: 0o600 });
  writeFileSync('examples/keys/examples.pub', key.publicPem);
}
const key = readPrivateKey(keyFile);
for (const dir of ['examples/plugins/native-c']) {
  const signature = signPlugin(inventoryPlugin(realpathSync(dir), DEFAULT_FILE_LIMITS), key);
  writeFileSync(join(dir, SIGNATURE_FILE), `${JSON.stringify(signature, null, 2)}\n`);
}
process.stderr.write(
  `build-plugins: ${counts.wat} WAT, ${counts.c} C, ${counts.as} AssemblyScript, ${counts.native} native; examples signed\n`,
);
