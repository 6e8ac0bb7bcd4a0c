// lifecycle_per_second: a tenant's installs, removals and reloads pass a token bucket (docs/TENANTS.md), so a
// tenant token cannot restart its plugins in a loop (each reload stops and starts sandboxes on the host's thread).
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { stream, tarDir } from '../helpers/tar.js';
import { type Fixture, NOTES, notesDir, startRegistry } from '../helpers/tenants.js';

describe('lifecycle_per_second (mode none)', () => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    fixture = undefined;
  });

  it('reloads, installs and removals past the bucket answer quota_exceeded with when to retry; another tenant’s pass', async () => {
    fixture = await startRegistry('none');
    const c = await fixture.registry.create('c', {
      plugin_dirs: [notesDir(fixture.dir, 'plugins-c')],
      quotas: { lifecycle_per_second: 0.001 },
    });
    const a = fixture.registry.get('a');
    if (a === undefined) throw new Error('no tenant a');
    // The burst: 10 (before: every one passed, without end).
    for (let i = 0; i < 10; i++) await c.reload(NOTES);
    for (const attempt of [
      () => c.reload(NOTES),
      () => c.remove(NOTES),
      async () => c.install(NOTES, stream(await tarDir(join(REPO, 'examples/plugins/notes-c')))),
    ]) {
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({
        code: 'quota_exceeded',
        details: { tenant: 'c', quota: 'lifecycle_per_second', limit: 0.001 },
      });
      expect((error as { details: { retryAfterMs: number } }).details.retryAfterMs).toBeGreaterThan(0);
    }
    expect(c.status().map((s) => [s.id, s.state])).toEqual([[NOTES, 'ready']]);
    expect(fixture.registry.usage('c').denied).toEqual({ lifecycle_per_second: 3 });
    // Tenant a has no such quota: the default bucket (10 at once) is its own.
    for (let i = 0; i < 3; i++) await a.reload(NOTES);
  });

  it('a rate that is not a positive number is refused with the field named', async () => {
    fixture = await startRegistry('none');
    await expect(
      fixture.registry.create('bad', { quotas: { lifecycle_per_second: 0 } }),
    ).rejects.toMatchObject({ code: 'tenant_invalid', details: { field: 'quotas.lifecycle_per_second' } });
  });
});
