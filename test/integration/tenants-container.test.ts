import Docker from 'dockerode';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Fixture, NOTES, startRegistry, tenantSuite } from '../helpers/tenants.js';

// Runners start from dist/ in the runner image: `npm run build` first; needs Docker (scripts/setup.sh).
describe('tenants, mode container (runc)', () => {
  let fixture: Fixture;
  beforeEach(async () => {
    fixture = await startRegistry('container', '[sandbox]\nruntime = "runc"\n');
  }, 300_000);
  afterEach(() => fixture.registry.close());
  tenantSuite('container', () => fixture, 600_000);
});

describe('tenants, container labels', () => {
  it('each tenant host labels its containers reed.tenant', async () => {
    const fixture = await startRegistry('container', '[sandbox]\nruntime = "runc"\n');
    try {
      const docker = new Docker();
      for (const id of ['a', 'b']) {
        const session = fixture.registry.get(id)?.host.session.id;
        const listed = await docker.listContainers({
          all: true,
          filters: { label: [`reed.host.session=${session}`] },
        });
        expect(listed.map((c) => [c.Labels['reed.tenant'], c.Labels['reed.plugin.id']])).toEqual([
          [id, NOTES],
        ]);
      }
    } finally {
      await fixture.registry.close();
    }
  }, 300_000);
});
