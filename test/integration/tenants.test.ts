import { afterEach, beforeEach, describe } from 'vitest';
import { type Fixture, startRegistry, tenantSuite } from '../helpers/tenants.js';

describe('tenants, mode none', () => {
  let fixture: Fixture;
  beforeEach(async () => {
    fixture = await startRegistry('none');
  });
  afterEach(() => fixture.registry.close());
  tenantSuite('none', () => fixture);
});
