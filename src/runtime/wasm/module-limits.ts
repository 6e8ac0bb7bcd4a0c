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
}

export const DEFAULT_WASM_MODULE_LIMITS: Readonly<WasmModuleLimits> = Object.freeze({
  maxFunctions: 100_000,
  maxFunctionBytes: 1024 * 1024,
  maxCodeBytes: 16 * 1024 * 1024,
  maxFunctionLocals: 10_000,
});

/** The configuration key of each limit, for messages that say how to raise it. */
export const WASM_LIMIT_KEYS: Readonly<Record<keyof WasmModuleLimits, string>> = Object.freeze({
  maxFunctions: 'max_functions',
  maxFunctionBytes: 'max_function_bytes',
  maxCodeBytes: 'max_code_bytes',
  maxFunctionLocals: 'max_function_locals',
});

function exceeded(limits: WasmModuleLimits, key: keyof WasmModuleLimits, what: string): ReedError {
  return new ReedError(
    'wasm_limit_exceeded',
    `${what}, above the host's limit of ${limits[key]}; a host that trusts this module can raise [wasm] ${WASM_LIMIT_KEYS[key]} in its configuration`,
  );
}

/**
 * Throws `wasm_limit_exceeded` for a module over `limits`, `wasm_invalid` for one too malformed to measure.
 * Reads only section headers and each body's size and local declarations: time linear in the number of
 * functions, no allocation.
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
