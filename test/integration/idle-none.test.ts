// Scale to zero in mode none (issue 16, part 2): the WASM instance and its memory are dropped after idle_timeout,
// made again on the next call (test/helpers/idle.ts).
import { describe, expect } from 'vitest';
import { idleSuite } from '../helpers/idle.js';

describe('scale to zero, mode none', () => {
  idleSuite(
    'none',
    {
      // Nothing runs apart from the host: no instance, so no memory reported.
      async nothingRuns(_host, sandbox) {
        expect(sandbox.usage?.()).toBeUndefined();
      },
    },
    60_000,
  );
});
