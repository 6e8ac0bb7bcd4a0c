import { ReedError } from '../../errors.js';
import { BinaryError, Reader } from './binary.js';

/**
 * What a module may contain, checked by one cheap pass over its section headers and function-body headers
 * before anything expensive (V8's validation, instrumentation, compilation) looks at it. Each is a host
 * configuration key under `[wasm]` (docs/ABI-wasm.md): a plugin cannot raise them from its own manifest.
 */
export interface WasmModuleLimits {
  /** Functions defined in the code section. `[wasm] max_functions`. */
  maxFunctions: number;
  /** Bytes of one function body. `[wasm] max_function_bytes`. */
  maxFunctionBytes: number;
  /** Bytes of the code section (every body). `[wasm] max_code_bytes`. */
  maxCodeBytes: number;
  /** Locals declared by one function (not counting its parameters). `[wasm] max_function_locals`. */
  maxFunctionLocals: number;
  /** Exports, of any kind. `[wasm] max_exports`. */
  maxExports: number;
  /** Imports, of any kind. `[wasm] max_imports`. */
  maxImports: number;
  /** Globals defined in the global section. `[wasm] max_globals`. */
  maxGlobals: number;
  /** Tags defined in the tag section. `[wasm] max_tags`. */
  maxTags: number;
}

/**
 * The defaults. Exports, imports, globals and tags are made anew at every instantiation (a command's every call),
 * each paid in fuel (instantiation-fuel.ts), and V8's own caps are far above what a plugin has (100,000 exports
 * and imports, 1,000,000 globals and tags; a module near those held the host's thread 36-336 ms an instance). Their
 * caps here are an order of magnitude or more above real programs, and keep an instance's price well within the
 * default fuel_per_call (10,000 exports: 328M fuel): a program exports tens of functions (a few thousand with
 * --export-all), imports each host function it uses once (the host provides fewer than a hundred names, so 1,000
 * leaves room only for duplicates no linker writes), defines tens to hundreds of globals (a stack pointer and the
 * heap's bounds; AssemblyScript makes one of each top-level variable), and a tag or two (C++ exceptions use one).
 */
export const DEFAULT_WASM_MODULE_LIMITS: Readonly<WasmModuleLimits> = Object.freeze({
  maxFunctions: 100_000,
  maxFunctionBytes: 1024 * 1024,
  maxCodeBytes: 16 * 1024 * 1024,
  maxFunctionLocals: 10_000,
  maxExports: 10_000,
  maxImports: 1_000,
  maxGlobals: 10_000,
  maxTags: 1_000,
});

/** The configuration key of each limit, for messages that say how to raise it. */
export const WASM_LIMIT_KEYS: Readonly<Record<keyof WasmModuleLimits, string>> = Object.freeze({
  maxFunctions: 'max_functions',
  maxFunctionBytes: 'max_function_bytes',
  maxCodeBytes: 'max_code_bytes',
  maxFunctionLocals: 'max_function_locals',
  maxExports: 'max_exports',
  maxImports: 'max_imports',
  maxGlobals: 'max_globals',
  maxTags: 'max_tags',
});

function exceeded(limits: WasmModuleLimits, key: keyof WasmModuleLimits, what: string): ReedError {
  return new ReedError(
    'wasm_limit_exceeded',
    `${what}, above the host's limit of ${limits[key]}; a host that trusts this module can raise [wasm] ${WASM_LIMIT_KEYS[key]} in its configuration`,
  );
}

/** The sections whose count (their first u32) is capped, and what each counts. */
const COUNTED_SECTIONS: Readonly<Record<number, { key: keyof WasmModuleLimits; what: string }>> = {
  2: { key: 'maxImports', what: 'has $ imports' },
  6: { key: 'maxGlobals', what: 'defines $ globals' },
  7: { key: 'maxExports', what: 'has $ exports' },
  13: { key: 'maxTags', what: 'defines $ tags' },
};

/**
 * Throws `wasm_limit_exceeded` for a module over `limits`, `wasm_invalid` for one too malformed to measure.
 * Reads only section headers, the counts of the sections above, and each body's size and local declarations:
 * time linear in the number of functions, no allocation.
 */
export function checkModuleLimits(input: Uint8Array, limits: WasmModuleLimits): void {
  try {
    const r = new Reader(input, 8);
    while (!r.done) {
      const id = r.byte();
      const size = r.u32();
      const end = r.pos + size;
      if (end > input.length) throw new BinaryError(`section ${id} runs past the end of the module`);
      if (id === 10) checkCode(new Reader(input, r.pos, end), size, limits);
      const counted = COUNTED_SECTIONS[id];
      if (counted !== undefined) {
        const n = new Reader(input, r.pos, end).u32();
        if (n > limits[counted.key])
          throw exceeded(limits, counted.key, `the module ${counted.what.replace('$', String(n))}`);
      }
      r.pos = end;
    }
  } catch (error) {
    if (error instanceof BinaryError)
      throw new ReedError('wasm_invalid', `malformed module: ${error.message}`, { cause: error });
    throw error;
  }
}

function checkCode(s: Reader, size: number, limits: WasmModuleLimits): void {
  if (size > limits.maxCodeBytes) throw exceeded(limits, 'maxCodeBytes', `the code section is ${size} bytes`);
  const functions = s.u32();
  if (functions > limits.maxFunctions)
    throw exceeded(limits, 'maxFunctions', `the module defines ${functions} functions`);
  for (let i = 0; i < functions; i++) {
    const bodySize = s.u32();
    const bodyEnd = s.pos + bodySize;
    if (bodySize > limits.maxFunctionBytes)
      throw exceeded(limits, 'maxFunctionBytes', `function ${i} of the code section is ${bodySize} bytes`);
    if (bodyEnd > s.end) throw new BinaryError(`function ${i} runs past the end of the code section`);
    const body = new Reader(s.bytes, s.pos, bodyEnd);
    let locals = 0;
    for (let groups = body.u32(); groups > 0; groups--) {
      locals += body.u32();
      body.byte();
      if (locals > limits.maxFunctionLocals)
        throw exceeded(
          limits,
          'maxFunctionLocals',
          `function ${i} of the code section declares ${locals} locals or more`,
        );
    }
    s.pos = bodyEnd;
  }
}
