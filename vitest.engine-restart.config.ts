import { defineConfig } from 'vitest/config';

/**
 * The Docker engine restart (test/integration/engine-restart*.test.ts), run by `npm test` after the main suite, alone:
 * it restarts a dockerd of its own and builds the runner images in it, load the parallel suite does not need beside it.
 */
export default defineConfig({
  test: {
    include: ['test/integration/engine-restart*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
