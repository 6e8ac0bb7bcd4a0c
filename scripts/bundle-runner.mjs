// The runner program as one bundle: dist/runner/{main,worker,warm-preload}.js and their shared chunks, made by
// esbuild from the compiled dist/sandbox-runner/ and dist/src/ (scripts/build.sh runs it after tsc; so does
// `npm run prepare`). Why: a runner starts for every sandbox, and Node's ES module loader costs per module (resolve,
// package scope, format, permission checks): importing the WASM runtime's 34 modules took 49-79 ms of CPU on this
// machine, the same code bundled 15-25 ms (6 alternating runs each, load ~11). Behaviour is the same code's: koffi
// (a native addon) stays outside and is required from node_modules as before.
//
//   node scripts/bundle-runner.mjs [DIST]     DIST: the compiled tree (default dist), written into DIST/runner
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const dist = resolve(process.argv[2] ?? 'dist');
const outdir = join(dist, 'runner');
const entries = ['main', 'worker', 'warm-preload'].map((name) => join(dist, 'sandbox-runner', `${name}.js`));
for (const entry of entries)
  if (!existsSync(entry)) throw new Error(`bundle-runner: ${entry} is missing (run tsc first)`);
rmSync(outdir, { recursive: true, force: true });

await build({
  entryPoints: entries,
  outdir,
  bundle: true,
  // The runner imports the WASM runtime, confinement and TLS only when it needs them (import()): each stays its own
  // chunk, and the modules the entry points share are shared, not copied (the warm preload must load the very
  // modules main.js then uses).
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['koffi'],
  // CommonJS dependencies (semver) call require(): ESM output has none, so give each file Node's own.
  banner: {
    js: "import { createRequire as __reedCreateRequire } from 'node:module'; const require = __reedCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
});
