// One load of a module through the compile cache, in a fresh process; prints milliseconds. Used by wasm.ts.
import { CompileCache } from '../src/cache/compile-cache.js';
import { compileWasm } from '../src/runtime/wasm/compile-wasm.js';

const [file, cacheDir] = process.argv.slice(2) as [string, string];
const started = performance.now();
const compiled = await compileWasm(file, {
  pluginId: 'bench',
  memoryMb: 64,
  tableElements: 10_000,
  fuelPerCall: 1_000_000_000, // the default: the module's instance must cost less (prepare-job.ts)
  cache: new CompileCache({ dir: cacheDir }),
});
new WebAssembly.Instance(compiled.module, {});
process.stdout.write(`${performance.now() - started}\n`);
