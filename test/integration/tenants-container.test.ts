import { afterEach, beforeEach, describe } from 'vitest';
import { type Fixture, startRegistry, tenantSuite } from '../helpers/tenants.js';

// Runners start from dist/ in the runner image: `npm run build` first; needs Docker (scripts/setup.sh).
describe('tenants, mode container (runc)', () => {
  let fixture: Fixture;
  beforeEach(async () => {
    fixture = await startRegistry('container', '[sandbox]\nruntime = "runc"\n');
  }, 300_000);
  afterEach(() => fixture.registry.close());
  tenantSuite('container', () => fixture, 600_000);
});
