import { defineConfig } from 'vitest/config';

/** The tests docker-compose.yml runs in its `tests` service, against the orchestrator's API. */
export default defineConfig({
  test: {
    include: ['test/compose/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
