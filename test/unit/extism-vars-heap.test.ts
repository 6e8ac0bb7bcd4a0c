// An Extism plugin's variables live in the host's heap (mode none: the host's own) for as long as the plugin is
// loaded; limits.extism_var_bytes must bound what they hold there, bookkeeping included. Tiny variables (a 3-byte key,
// a 1-byte value) are set until the quota refuses one, then the heap they hold is measured after a full collection.
// Found by the adversarial pass H10: each variable was counted 48 bytes besides its key and value while the host held
// ~260 bytes of heap for it (a Map entry, the key's string, a typed array), so the quota held ~5 times its size.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect, it } from 'vitest';
import type { ReedError } from '../../src/errors.js';
import { ExtismVars } from '../../src/runtime/wasm/extism-vars.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

it('variables hold no more of the host heap than limits.extism_var_bytes, however small each is', () => {
  const quota = 16 * 1024 * 1024;
  gc();
  const before = process.memoryUsage().heapUsed;
  const vars = new ExtismVars('case.vars', quota);
  const key = new Uint8Array(3);
  const value = new Uint8Array([1]);
  let count = 0;
  for (;;) {
    key[0] = count & 0xff;
    key[1] = (count >> 8) & 0xff;
    key[2] = (count >> 16) & 0xff;
    try {
      vars.set(key, value);
    } catch (error) {
      expect((error as ReedError).code).toBe('extism_var_quota_exceeded');
      break;
    }
    count++;
  }
  gc();
  const held = process.memoryUsage().heapUsed - before;
  expect(vars.get(new Uint8Array(3))).toEqual(value); // still held, measured above
  expect(count).toBeGreaterThan(1_000);
  expect(held).toBeLessThanOrEqual(quota);
});
