// Loaded before the runner's main module (`node --import`) in a warm runner of a pool (src/backends/pool/) only:
// the WASM runtime's modules (and WASI's) are imported, and V8's WebAssembly engine started with an empty module,
// before the runner connects and says Hello. The pool counts a runner ready once its Hello is in, so this work is
// done at pool fill, not at hand-out: the Welcome's `import()` of the same modules (start-runtime.ts) then finds
// them loaded. A warm runner is only ever handed a WASM plugin (fitsPool in src/backends/process/backend.ts). In a
// freshly started runner this module is not loaded: a native plugin's runner never loads the WASM runtime.
//
// Measured (trace of a hand-out, load ~13 on 2 cores): the Welcome's import of these modules took 60-130 ms of a
// 70-225 ms hand-out.

/** The smallest valid module: its compile starts V8's WebAssembly engine. */
const EMPTY_MODULE = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

try {
  await import('../src/runtime/wasm/wasm-plugin.js');
  await import('../src/runtime/wasm/wasi.js');
  new WebAssembly.Instance(new WebAssembly.Module(EMPTY_MODULE));
} catch (error) {
  // Not fatal: the Welcome imports them again, and reports what fails then as the plugin's load error.
  process.stderr.write(`sandbox-runner: preloading the WASM runtime failed: ${(error as Error).message}\n`);
}
