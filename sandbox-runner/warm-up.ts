// A warm runner of a pool (src/backends/pool/) only, before it dials the host (main.ts; warm-preload.ts marks a
// warm runner): the WASM runtime's modules (and WASI's) are initialised, and V8's WebAssembly engine started with an
// empty module, before the runner connects and says Hello. The pool counts a runner ready once its Hello is in, so
// this work is done at pool fill, not at hand-out: the Welcome's `import()` of the same modules (start-runtime.ts)
// then finds them loaded. A warm runner is only ever handed a WASM plugin (fitsPool in
// src/backends/process/backend.ts). A freshly started runner does none of this: a native plugin's runner never
// loads the WASM runtime.
//
// Measured (trace of a hand-out, load ~13 on 2 cores): the Welcome's import of these modules took 60-130 ms of a
// 70-225 ms hand-out.
//
// Then a warm-up: a small module of the runner's own (WARM_UP_MODULE below, no plugin's) is loaded, initialised,
// called once and deactivated through the very functions a Welcome and a call go through (startRuntime,
// runnerHostApi, WasmPlugin's instance, imports and call path), so that V8 has compiled them (it compiles a JS
// function on its first call) before the hand-out, not during it. Nothing of it stays: its runtime is dropped,
// it has no host to call, and module-level state is only what the runtime's modules keep for any plugin. Measured
// (runner CPU from the Welcome to its Ready, example.hello, alternating with and without, 2 runs of 20 hand-outs,
// load ~9 on 2 cores): 6.3 ms without, 4.1-4.6 ms with.

import type { PluginSpec } from '../src/protocol/messages.js';

/** The smallest valid module: its compile starts V8's WebAssembly engine. */
const EMPTY_MODULE = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

/**
 * The warm-up's module (the runner's own; its text is in the comment): memory, reed's input and output imports and
 * env.log, an `init` and a `run` that copies its input to its output.
 *
 *   (module
 *     (import "reed" "input_len" (func $input_len (result i32)))
 *     (import "reed" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
 *     (import "reed" "output_write" (func $output_write (param i32 i32) (result i32)))
 *     (import "env" "log" (func $log (param i32 i32 i32)))
 *     (memory (export "memory") 1)
 *     (func (export "init") (result i32) (i32.const 0))
 *     (func (export "run") (result i32)
 *       (local $n i32)
 *       (local.set $n (call $input_read (i32.const 0) (call $input_len) (i32.const 0)))
 *       (drop (call $output_write (i32.const 0) (local.get $n)))
 *       (i32.const 0)))
 */
const WARM_UP_MODULE =
  'AGFzbQEAAAABGARgAAF/YAN/f38Bf2ACf38Bf2ADf39/AAJCBARyZWVkCWlucHV0X2xlbgAABHJlZWQKaW5wdXRfcmVhZAABBHJlZWQMb3V0cHV0X3dyaXRlAAIDZW52A2xvZwADAwMCAAAFAwEAAQcXAwZtZW1vcnkCAARpbml0AAQDcnVuAAUKHgIEAEEACxcBAX9BABAAQQAQASEAQQAgABACGkEACw==';

/** The mark warm-preload.ts leaves on a warm runner (main.ts then calls warmUp before it dials). */
export const WARM_RUNNER = Symbol.for('reed.warmRunner');

/** Loads, initialises, calls once and drops the warm-up module through the runner's own path (see above). */
async function warmUpModule(): Promise<void> {
  const { startRuntime } = await import('./start-runtime.js');
  const { runnerHostApi } = await import('./runner-host-api.js');
  const { DEFAULT_LIMITS } = await import('../src/manifest/limits.js');
  const host = runnerHostApi({ log: () => {}, configuration: {} });
  const spec: PluginSpec = {
    id: 'reed-warm-up',
    type: 'wasm',
    apiVersion: '',
    limits: DEFAULT_LIMITS,
    wasi: { args: [], env: {} },
    hostCalls: false,
    configuration: {},
    exports: ['init', 'run'].map((name) => ({
      name,
      kind: 'function' as const,
      type: { params: [], results: ['i32'] },
    })),
  };
  const runtime = await startRuntime(spec, Buffer.from(WARM_UP_MODULE, 'base64'), host, process.cwd());
  try {
    runtime.call('run', new Uint8Array([1, 2, 3]));
  } finally {
    runtime.deactivate();
  }
}

/** The WASM runtime loaded and warmed up (see above). Never throws: a failure is said on stderr. */
export async function warmUp(): Promise<void> {
  try {
    await import('../src/runtime/wasm/wasm-plugin.js');
    await import('../src/runtime/wasm/wasi.js');
    new WebAssembly.Instance(new WebAssembly.Module(EMPTY_MODULE));
    await warmUpModule();
  } catch (error) {
    // Not fatal: the Welcome imports them again, and reports what fails then as the plugin's load error.
    process.stderr.write(`sandbox-runner: preloading the WASM runtime failed: ${(error as Error).message}\n`);
  }
}
