import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Those run inside docker-compose.yml's `tests` service, against an orchestrator (vitest.compose.config.ts).
    // The engine restart runs alone, after this suite (vitest.engine-restart.config.ts).
    exclude: ['test/compose/**', 'test/integration/engine-restart*.test.ts', '**/node_modules/**'],
    // Docker and process tests start real engines and children; give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
