import { describe, expect, it } from 'vitest';
import { within } from '../../src/backends/shared/within.js';

// The start-up sweeps' bound (container and swarm backends): a remote party that never finishes must not hold the
// host's start.
describe('within', () => {
  it('ends the wait for work that never settles, with the message given', async () => {
    await expect(within(new Promise(() => {}), 20, 'the engine took too long')).rejects.toThrow(
      'the engine took too long',
    );
  });

  it('gives the work’s value or its failure when it settles first', async () => {
    await expect(within(Promise.resolve(7), 60_000, 'late')).resolves.toBe(7);
    await expect(within(Promise.reject(new Error('refused')), 60_000, 'late')).rejects.toThrow('refused');
  });
});
