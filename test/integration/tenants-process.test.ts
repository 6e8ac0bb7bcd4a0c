import { afterEach, beforeEach, describe } from 'vitest';
import { type Fixture, startRegistry, tenantSuite } from '../helpers/tenants.js';

// Runners start from dist/: `npm run build` first.
describe('tenants, mode process', () => {
  let fixture: Fixture;
  beforeEach(async () => {
    fixture = await startRegistry('process');
  }, 60_000);
  afterEach(() => fixture.registry.close());
  tenantSuite('process', () => fixture);
});
