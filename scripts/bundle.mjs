// Bundles, made by esbuild from the compiled tree after tsc (scripts/build.sh runs this; so does `npm run prepare`),
// of the programs that start often and would otherwise pay Node's ES module loader per module (resolve, package
// scope, format, permission checks) at every start:
// - the runner program: dist/runner/{main,runner,worker,warm-preload}.js, from dist/sandbox-runner/ and dist/src/, each one
//   CommonJS file (dist/runner/package.json says so). A runner starts for every sandbox: importing the WASM
//   runtime's 34 modules took 49-79 ms of CPU on this machine, the same code bundled 15-25 ms (6 alternating runs
//   each, load ~11). As ES modules (an entry and ten shared chunks) the runner still started Node's ES module loader
//   and resolved, read and linked each chunk: as one CommonJS file it needs none of that, and its lazily imported
//   parts (the WASM runtime, native plugins, confinement, TLS) are functions of that file that run when first
//   imported. A runner's start to its connect, `node dist/runner/main.js` (perf stat task-clock, 10 alternating runs
//   each, load ~15): 130 ms of CPU as ES module chunks, 113 as one CommonJS file (a warm runner's: 166 and 135).
// - the discovery worker (src/discovery/discover-worker.ts), bundled in place: discovery's worker threads load it
//   while the calling thread already works, and its ~190 modules took 487-507 ms of CPU to import, bundled 183-219
//   (5 alternating runs each, load ~10-13).
// Behaviour is the same compiled code's: koffi (a native addon) stays outside and is required from node_modules.
//
//   node scripts/bundle.mjs [DIST]     DIST: the compiled tree (default dist)
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
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

// The runner: each entry one CommonJS file (no chunks: no ES module loader at a runner's start). import.meta.url is
// the file's own URL (main.ts finds worker.js beside it; libc.ts requires koffi from it). The program is
// runner.js; main.js, what runners are started with, only requires it: a warm runner's `--import` preload makes
// Node load the main module through its ES module loader, which took ~100 ms more CPU for the 290 KB file itself
// than for this one line (perf stat, 8 alternating runs, load ~14), and a require from there is Node's plain one.
mkdirSync(outdir, { recursive: true });
writeFileSync(join(outdir, 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(
  join(outdir, 'main.js'),
  "// The runner program (sandbox-runner/main.ts), bundled as runner.js: scripts/bundle.mjs says why it is two files.\nrequire('./runner.js');\n",
);
await build({
  ...common,
  format: 'cjs',
  entryPoints: { runner: entries[0], worker: entries[1], 'warm-preload': entries[2] },
  outdir,
  define: { 'import.meta.url': '__reedImportMetaUrl' },
  banner: { js: "const __reedImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// In place: src/discovery/discover.ts starts its workers from the module beside it, and nothing imports it.
await build({ ...common, entryPoints: [discoveryWorker], outfile: discoveryWorker, allowOverwrite: true });
