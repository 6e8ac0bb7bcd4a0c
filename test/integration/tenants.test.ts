import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Fixture, NOTES, startRegistry, tenantSuite } from '../helpers/tenants.js';

describe('tenants, mode none', () => {
  let fixture: Fixture;
  beforeEach(async () => {
    fixture = await startRegistry('none');
  });
  afterEach(() => fixture.registry.close());
  tenantSuite('none', () => fixture);
});

describe('tenants, registry options', () => {
  it('`plugins` (serve --plugin) picks among the default tenant\u2019s plugins only', async () => {
    const { registry } = await startRegistry('none', '', { plugins: ['none.such'] });
    try {
      expect(registry.get('default')?.status()).toEqual([]);
      expect(
        registry
          .get('a')
          ?.status()
          .map((s) => s.id),
      ).toEqual([NOTES]);
    } finally {
      await registry.close();
    }
  });
});
