// Bundles, made by esbuild from the compiled tree after tsc (scripts/build.sh runs this; so does `npm run prepare`),
// of the programs that start often and would otherwise pay Node's ES module loader per module (resolve, package
// scope, format, permission checks) at every start:
// - the runner program: dist/runner/{main,worker,warm-preload}.js and their shared chunks, from dist/sandbox-runner/
//   and dist/src/. A runner starts for every sandbox: importing the WASM runtime's 34 modules took 49-79 ms of CPU
//   on this machine, the same code bundled 15-25 ms (6 alternating runs each, load ~11).
// - the discovery worker (src/discovery/discover-worker.ts), bundled in place: discovery's worker threads load it
//   while the calling thread already works, and its ~190 modules took 487-507 ms of CPU to import, bundled 183-219
//   (5 alternating runs each, load ~10-13).
// Behaviour is the same compiled code's: koffi (a native addon) stays outside and is required from node_modules.
//
//   node scripts/bundle.mjs [DIST]     DIST: the compiled tree (default dist)
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const dist = resolve(process.argv[2] ?? 'dist');
const outdir = join(dist, 'runner');
const entries = ['main', 'worker', 'warm-preload'].map((name) => join(dist, 'sandbox-runner', `${name}.js`));
const discoveryWorker = join(dist, 'src', 'discovery', 'discover-worker.js');
for (const entry of [...entries, discoveryWorker])
  if (!existsSync(entry)) throw new Error(`bundle: ${entry} is missing (run tsc first)`);
rmSync(outdir, { recursive: true, force: true });

const common = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['koffi'],
  // CommonJS dependencies (semver, ajv) call require(): ESM output has none, so give each file Node's own.
  banner: {
    js: "import { createRequire as __reedCreateRequire } from 'node:module'; const require = __reedCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
};

await build({
  ...common,
  entryPoints: entries,
  outdir,
  // The runner imports the WASM runtime, confinement and TLS only when it needs them (import()): each stays its own
  // chunk, and the modules the entry points share are shared, not copied (the warm preload must load the very
  // modules main.js then uses).
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
});

// In place: src/discovery/discover.ts starts its workers from the module beside it, and nothing imports it.
await build({ ...common, entryPoints: [discoveryWorker], outfile: discoveryWorker, allowOverwrite: true });
