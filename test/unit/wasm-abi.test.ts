import { describe, expect, it } from 'vitest';
import { expectedSignature, isKnownImport } from '../../src/runtime/wasm/abi.js';

describe('the host import table', () => {
  // Import names are the module's own strings: inherited Object properties must not look like host functions.
  it.each([
    ['reed', 'constructor'],
    ['reed', '__proto__'],
    ['reed', 'toString'],
    ['constructor', 'name'],
    ['__proto__', 'toString'],
    ['hasOwnProperty', 'call'],
  ])('%s.%s is not a host import', (module, name) => {
    expect(isKnownImport(module, name)).toBe(false);
    expect(expectedSignature(module, name)).toBeUndefined();
  });

  it('still knows its own imports', () => {
    expect(isKnownImport('reed', 'input_len')).toBe(true);
    expect(expectedSignature('reed', 'input_len')).toBeDefined();
  });
});
