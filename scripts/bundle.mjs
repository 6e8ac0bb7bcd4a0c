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
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
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

/**
 * What runners are started with (dist/runner/main.js). It compiles runner.js, which is the function Node's require
 * would wrap it in, and calls it as require would (file name, require, module), but with V8's code cache of a
 * runner's start beside it
 * (runner.js.heap-<MiB>.cache, for the heap cap the runner was started with): V8 then deserialises the functions
 * a start runs instead of parsing the 290 KB file and compiling them. Runner CPU from exec to Ready, example.hello
 * in process mode (schedstat of the sandbox's tasks, medians of 9 alternating starts, 3 runs, load ~6, nice -19):
 * 82.8, 66.3, 65.0 ms without, 64.6, 56.8, 59.9 with; a runc container's CPU (its cpuacct) to Ready, 6 runs of 5-7
 * alternating starts at load 9-12: lower in 5 of 6, by 4-10 ms (31 in one). V8 refuses a cache of another V8, other
 * V8 flags or a source of another length (cachedDataRejected): the runner then compiles as before. The header holds
 * runner.js's size and mtime (to the second, what an image keeps: images.ts), so a runner.js changed by hand after
 * the build is never run with the old file's code.
 */
const RUNNER_MAIN_JS = `// The runner program (sandbox-runner/main.ts), bundled as runner.js: scripts/bundle.mjs says why it is two
// files, and why runner.js is compiled here (with V8's code cache of a runner's start, when it fits).
'use strict';
// Node 20 (V8 11.3) and 22 count the heap flags a runner starts with (--max-old-space-size, --max-semi-space-size) in
// the flag hash that Node's own code cache of its built-in modules is checked against: with them, every built-in a
// runner loads that is not in Node's startup snapshot (stream, net, vm, worker_threads: 37 modules) was compiled from
// source. V8 sized this heap from the flags before any JavaScript ran (its heap_size_limit and semi-space cap do not
// move when the flags do), so they are set to their defaults before runner.js loads, and stay so until runner.js
// first takes node:worker_threads (runnerRequire below): a Worker's heap is sized from the flags as they are when it
// starts. So the built-ins loaded after the Welcome (WASI's crypto, TLS, perf_hooks for a deadline) come from Node's
// cache too (perf_hooks' 9 modules from source were ~2-3 ms of a runner's CPU). Node 24 leaves these flags out of
// the hash.
const heapFlags = process.execArgv.filter((a) => /^--max-(old|semi)-space-size=/.test(a));
// V8's own binding where the process may take it (container mode): node:v8 loads 22 stream modules before it can
// set a flag, and those then compile from source (runner CPU to Ready ~6-10 ms more). Node's permission model
// (process mode) denies process.binding but allows addons: v8-flags.node (sandbox-runner/v8-flags.c), V8's setter
// alone. node:v8 where neither loads. Quiet: process.binding('v8') warns (DEP0111) otherwise.
const v8SetFlags = () => {
  const quiet = process.noDeprecation;
  process.noDeprecation = true;
  try {
    return process.binding('v8').setFlagsFromString;
  } catch {
    try {
      const addon = { exports: {} };
      process.dlopen(addon, \`\${__dirname}/v8-flags.node\`);
      return addon.exports;
    } catch {
      return require('node:v8').setFlagsFromString;
    }
  } finally {
    process.noDeprecation = quiet;
  }
};
const setFlags = heapFlags.length > 0 && Number(process.versions.node.split('.')[0]) < 24 ? v8SetFlags() : undefined;
/** Node's own flag hash (runner.js's code cache is made and taken under it too), or the runner's flags. */
const ownHash = (own) => {
  for (const flag of heapFlags) setFlags?.(own ? flag.replace(/=.*/, '=0') : flag);
};
ownHash(true);
const { readFileSync, statSync } = require('node:fs');
const { Script } = require('node:vm');
const file = \`\${__dirname}/runner.js\`;
const source = readFileSync(file, 'utf8');
const heap = process.execArgv.find((a) => a.startsWith('--max-old-space-size='))?.slice(21) ?? 'default';
const cacheFile = \`\${file}.heap-\${heap}.cache\`;
let cachedData;
try {
  const cache = readFileSync(cacheFile);
  const end = cache.indexOf(10);
  const st = statSync(file);
  if (cache.toString('latin1', 0, end) === \`reed-code-cache \${st.size} \${Math.trunc(st.mtimeMs / 1000)}\`) cachedData = cache.subarray(end + 1);
} catch {}
// runner.js is the function Node's require would wrap it in (bundle.mjs): compiled as it is, nothing copied.
const script = new Script(source, { filename: file, cachedData });
// The build's own training run (scripts/bundle.mjs, writeCodeCache) only: a runner's environment never has it.
const out = process.env.REED_CODE_CACHE_OUT;
if (out !== undefined)
  process.on('exit', () => {
    const st = statSync(file);
    ownHash(true);
    require('node:fs').writeFileSync(out, Buffer.concat([Buffer.from(\`reed-code-cache \${st.size} \${Math.trunc(st.mtimeMs / 1000)}\\n\`), script.createCachedData()]));
  });
// The runner's own flags come back before its first Worker can exist: node:worker_threads reaches runner.js only
// through this require (scripts/bundle.mjs checks that runner.js takes it nowhere else).
let restored = false;
const runnerRequire = (id) => {
  if (!restored && (id === 'node:worker_threads' || id === 'worker_threads')) {
    restored = true;
    ownHash(false);
  }
  return require(id);
};
script.runInThisContext()(module.exports, runnerRequire, module, file, __dirname);
`;

/** The training plugin: example.hello's shape (the same imports and calls), self-contained. */
const TRAINING_WAT = `(module
  (import "reed" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "reed" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "ready")
  (func (export "init") (result i32) (call $log (i32.const 1) (i32.const 0) (i32.const 5)) (i32.const 0))
  (func (export "echo") (result i32)
    (local $n i32)
    (local.set $n (call $input_read (i32.const 1024) (i32.const 65536) (i32.const 0)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))`;

// The runner: each entry one CommonJS file (no chunks: no ES module loader at a runner's start). import.meta.url is
// the file's own URL (main.ts finds worker.js beside it; libc.ts requires koffi from it). The program is
// runner.js; main.js, what runners are started with, only compiles and runs it (RUNNER_MAIN_JS): a warm runner's
// `--import` preload makes Node load the main module through its ES module loader, which took ~100 ms more CPU for
// the 290 KB file itself than for a one-line require (perf stat, 8 alternating runs, load ~14).
mkdirSync(outdir, { recursive: true });
writeFileSync(join(outdir, 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(join(outdir, 'main.js'), RUNNER_MAIN_JS);
buildV8FlagsAddon();
await build({
  ...common,
  format: 'cjs',
  entryPoints: { runner: entries[0], worker: entries[1], 'warm-preload': entries[2] },
  outdir,
  define: { 'import.meta.url': '__reedImportMetaUrl' },
  banner: { js: "const __reedImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
});
// runner.js is CommonJS's function already (main.js compiles the file as it is): a wrapper joined to the source
// when the runner starts would be a second copy of the 290 KB source on its heap, one only a full GC frees (an idle
// runner's PSS 10.1 MiB with plain require, 10.4 with the copy). The source map's comment stays the last line.
{
  const runnerJs = join(outdir, 'runner.js');
  const code = readFileSync(runnerJs, 'utf8');
  const map = code.lastIndexOf('\n//# sourceMappingURL=');
  writeFileSync(
    runnerJs,
    `(function (exports, require, module, __filename, __dirname) {${code.slice(0, map)}\n})${code.slice(map)}`,
  );
}

// runner.js is compiled through vm.Script (main.js) and no dynamic import() has a loader there: none may be in it.
// And node:worker_threads only through main.js's require, which gives the runner its heap flags back first (a
// Worker's heap is sized from them): never through a require of runner.js's own making (createRequire).
{
  const runner = readFileSync(join(outdir, 'runner.js'), 'utf8');
  if (/\bimport\(/.test(runner))
    throw new Error('bundle: dist/runner/runner.js calls import(), which main.js cannot serve (vm.Script)');
  const takes = runner.match(/[\w.$)]*\(\s*"(?:node:)?worker_threads"\s*\)/g) ?? [];
  if (takes.length === 0 || takes.some((t) => !/^require\(/.test(t)))
    throw new Error(
      `bundle: dist/runner/runner.js takes node:worker_threads other than by main.js's require: ${takes}`,
    );
}
await writeCodeCache();

// In place: src/discovery/discover.ts starts its workers from the module beside it, and nothing imports it.
await build({ ...common, entryPoints: [discoveryWorker], outfile: discoveryWorker, allowOverwrite: true });

/**
 * dist/runner/v8-flags.node from sandbox-runner/v8-flags.c (main.js: process mode's way to set the heap flags),
 * against the N-API headers of the node that builds (the node runners run: process mode's runner is this node). A
 * machine without a C compiler or the headers builds without it: main.js then takes node:v8, as before.
 */
function buildV8FlagsAddon() {
  const source = fileURLToPath(new URL('../sandbox-runner/v8-flags.c', import.meta.url));
  const headers = resolve(dirname(process.execPath), '..', 'include', 'node');
  const out = join(outdir, 'v8-flags.node');
  const why = !existsSync(join(headers, 'node_api.h'))
    ? `no N-API headers at ${headers}`
    : (() => {
        const cc = spawnSync(
          process.env.CC ?? 'cc',
          ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', `-I${headers}`, '-o', out, source],
          { encoding: 'utf8' },
        );
        return cc.status === 0 ? undefined : (cc.error?.message ?? cc.stderr.trim());
      })();
  if (why !== undefined) {
    rmSync(out, { force: true });
    console.warn(`bundle: dist/runner/v8-flags.node not built (${why}): process-mode runners take node:v8`);
  }
}

/**
 * Runs the bundled runner once per heap cap a runner is commonly started with (process mode's for the default
 * plugin limits, defaultRunnerCommand; a container's, RUNNER_ENTRYPOINT), against a host of its own here: Hello, the Welcome of a WASM plugin of
 * example.hello's shape, ten calls, Shutdown. At its exit the runner writes V8's code cache of all it compiled
 * (main.js, REED_CODE_CACHE_OUT). Its Node flags are the real runner's but Node's permission model (not V8's: the
 * cache does not depend on it) and its paths.
 */
async function writeCodeCache() {
  const load = (path) => import(pathToFileURL(join(dist, path)).href);
  const { DEFAULT_LIMITS } = await load('src/manifest/limits.js');
  const { defaultRunnerCommand } = await load('src/backends/process/runner-command.js');
  const { RUNNER_ENTRYPOINT } = await load('src/backends/container/container-spec.js');
  const work = mkdtempSync(join(tmpdir(), 'reed-code-cache-'));
  try {
    // Process mode's runner for the default limits, and a container's (the image's node is this node: Dockerfile.base).
    const [, ...processFlags] = defaultRunnerCommand(work, DEFAULT_LIMITS);
    for (const flags of [processFlags, RUNNER_ENTRYPOINT.slice(1, -1)])
      await trainRunner(
        load,
        DEFAULT_LIMITS,
        work,
        flags.filter((f) => f.startsWith('--') && !/^--(experimental-permission|permission|allow-)/.test(f)),
      );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** One training run of the runner with `v8Flags` (writeCodeCache): its cache for their heap cap. */
async function trainRunner(load, limits, work, v8Flags) {
  const { encodeFrame, FrameDecoder, FrameType } = await load('src/protocol/frames.js');
  const wabt = await (await import('wabt')).default();
  const bytes = Buffer.from(wabt.parseWat('training.wat', TRAINING_WAT).toBinary({}).buffer);
  const fn = (name) => ({ name, kind: 'function', type: { params: [], results: ['i32'] } });
  const spec = {
    id: 'reed.code-cache',
    type: 'wasm',
    apiVersion: '1.0.0',
    limits: { ...limits },
    wasi: { args: [], env: {} },
    exports: [{ name: 'memory', kind: 'memory' }, fn('init'), fn('echo')],
    isCommand: false,
    hostCalls: false,
    configuration: {},
  };
  const heap = v8Flags.find((a) => a.startsWith('--max-old-space-size='))?.slice(21) ?? 'default';
  const socketPath = join(work, `${heap}.sock`);
  const server = createServer((socket) => {
    const decoder = new FrameDecoder(1 << 30);
    let calls = 0;
    const call = () =>
      socket.write(encodeFrame(FrameType.Call, ++calls, { fn: 'echo' }, Buffer.from('training')));
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.type === FrameType.Hello)
          socket.write(encodeFrame(FrameType.Welcome, 0, { plugin: spec }, bytes));
        else if (frame.type === FrameType.Ready) call();
        else if (frame.type === FrameType.Result && calls < 10) call();
        else if (frame.type === FrameType.Result) socket.write(encodeFrame(FrameType.Shutdown, 0));
        else if (frame.type === FrameType.Error) socket.destroy(new Error(JSON.stringify(frame.meta)));
      }
    });
    socket.on('error', (error) =>
      console.error(`bundle: the code cache's training run failed: ${error.message}`),
    );
  });
  await new Promise((r) => server.listen(socketPath, r));
  const out = join(outdir, `runner.js.heap-${heap}.cache`);
  const child = spawn(
    process.execPath,
    [...v8Flags, join(outdir, 'main.js'), '--plugin-id', spec.id, '--socket', socketPath],
    {
      cwd: work,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', REED_SECRET_FD: '3', REED_CODE_CACHE_OUT: out },
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    },
  );
  child.stdio[3].end('training\n');
  const code = await new Promise((r) => child.once('exit', r));
  server.close();
  // Without a cache runners compile as before: a failed training run fails the build all the same.
  if (code !== 0 || !existsSync(out))
    throw new Error(`bundle: the code cache's training run exited with ${code}`);
}
