// The ReedCMS plugin SDK for AssemblyScript: typed wrappers over the WASM plugin ABI (docs/ABI-wasm.md).
// Compile plugins with `asc ... --use abort=` (the host provides no `env.abort`; an abort becomes a trap).
// A callable function is `export function name(): i32` returning 0 for success.

@external('env', 'log') declare function _log(level: i32, ptr: usize, len: i32): void;
@external('reed', 'input_len') declare function _input_len(): i32;
@external('reed', 'input_read') declare function _input_read(ptr: usize, len: i32, offset: i32): i32;
@external('reed', 'output_write') declare function _output_write(ptr: usize, len: i32): i32;
@external('reed', 'error_set') declare function _error_set(cp: usize, cl: i32, mp: usize, ml: i32): void;
@external('reed', 'storage_get') declare function _storage_get(kp: usize, kl: i32, bp: usize, bc: i32): i32;
@external('reed', 'storage_put') declare function _storage_put(kp: usize, kl: i32, vp: usize, vl: i32): i32;
@external('reed', 'storage_delete') declare function _storage_delete(kp: usize, kl: i32): i32;
@external('reed', 'event_emit') declare function _event_emit(tp: usize, tl: i32, dp: usize, dl: i32): i32;
@external('reed', 'config_get') declare function _config_get(kp: usize, kl: i32, bp: usize, bc: i32): i32;

export const NOT_FOUND: i32 = -1;
export const DEBUG: i32 = 0;
export const INFO: i32 = 1;
export const WARN: i32 = 2;
export const ERROR: i32 = 3;

function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

/** The call's input bytes. */
export function input(): Uint8Array {
  const out = new Uint8Array(_input_len());
  _input_read(out.dataStart, out.length, 0);
  return out;
}

export function inputString(): string {
  const bytes = input();
  return String.UTF8.decodeUnsafe(bytes.dataStart, bytes.length);
}

export function output(bytes: Uint8Array): void {
  _output_write(bytes.dataStart, bytes.length);
}

export function outputString(s: string): void {
  const b = utf8(s);
  _output_write(changetype<usize>(b), b.byteLength);
}

export function log(level: i32, message: string): void {
  const b = utf8(message);
  _log(level, changetype<usize>(b), b.byteLength);
}

/** Sets the code and message the host reports when the function returns non-zero. */
export function setError(code: string, message: string): void {
  const c = utf8(code);
  const m = utf8(message);
  _error_set(changetype<usize>(c), c.byteLength, changetype<usize>(m), m.byteLength);
}

/** Calls a "fill this buffer" import, growing the buffer once when the data is larger. */
function fetch(call: (bp: usize, bc: i32) => i32): Uint8Array | null {
  let buf = new Uint8Array(256);
  let n = call(buf.dataStart, buf.length);
  if (n < 0) return null;
  if (n > buf.length) {
    buf = new Uint8Array(n);
    n = call(buf.dataStart, buf.length);
    if (n < 0) return null;
  }
  return buf.subarray(0, n);
}

let keyScratch: ArrayBuffer = new ArrayBuffer(0);

export function storageGet(key: string): Uint8Array | null {
  keyScratch = utf8(key);
  return fetch((bp: usize, bc: i32): i32 => _storage_get(changetype<usize>(keyScratch), keyScratch.byteLength, bp, bc));
}

export function storagePut(key: string, value: Uint8Array): void {
  const k = utf8(key);
  _storage_put(changetype<usize>(k), k.byteLength, value.dataStart, value.length);
}

export function storageDelete(key: string): bool {
  const k = utf8(key);
  return _storage_delete(changetype<usize>(k), k.byteLength) == 0;
}

/** `json`: the event data as JSON text ("" for none). */
export function emit(topic: string, json: string): void {
  const t = utf8(topic);
  const d = utf8(json);
  _event_emit(changetype<usize>(t), t.byteLength, changetype<usize>(d), d.byteLength);
}

/** The [configuration] value at `key`, as JSON text, or null. */
export function config(key: string): string | null {
  keyScratch = utf8(key);
  const bytes = fetch((bp: usize, bc: i32): i32 => _config_get(changetype<usize>(keyScratch), keyScratch.byteLength, bp, bc));
  return bytes == null ? null : String.UTF8.decodeUnsafe(bytes.dataStart, bytes.length);
}
