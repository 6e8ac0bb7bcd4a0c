// Uncatchable errors for WASM guests (issue 10, class 13).

/**
 * `(module (func (export "trap") unreachable))`. A trap is the one error WASM exception handling cannot catch
 * (V8 marks the RuntimeError of a trap uncatchable, and it stays so when rethrown through a host import), so a
 * fatal host error leaves the guest as one of these: see WasmPlugin's #fatalize.
 * Tested with try/catch_all guests in test/security/wasm-runtime-bounds.test.ts.
 */
const TRAP_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
  0x07, 0x08, 0x01, 0x04, 0x74, 0x72, 0x61, 0x70, 0x00, 0x00, 0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b,
]);
let trapper: (() => void) | undefined;

/** A fresh uncatchable trap, or `fallback` when none can be made (no stack left to make one on). */
export function uncatchable(fallback: unknown): unknown {
  trapper ??= new WebAssembly.Instance(new WebAssembly.Module(TRAP_MODULE)).exports.trap as () => void;
  try {
    trapper();
  } catch (trap) {
    if (trap instanceof WebAssembly.RuntimeError) return trap;
  }
  return fallback;
}
