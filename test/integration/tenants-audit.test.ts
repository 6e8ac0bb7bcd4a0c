import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AuditEvent, publishAudit } from '../../src/events/audit.js';
import { AuditLog } from '../../src/tenants/audit-log.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { type Fixture, startRegistry } from '../helpers/tenants.js';

const event = (n: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  time: new Date(0).toISOString(),
  kind: n % 2 === 0 ? 'done' : 'denied',
  tokenId: `tok-${n}`,
  principal: n % 2 === 0 ? 'admin' : 'tenant',
  transport: 'unix',
  method: 'PUT',
  route: `/v1/admin/tenants/t${n}`,
  tenant: `t${n}`,
  plugin: undefined,
  status: n % 2 === 0 ? 200 : 403,
  outcome: n % 2 === 0 ? 'ok' : 'forbidden',
  ...extra,
});

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('audit log', () => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.registry.close();
    fixture = undefined;
  });

  it('the registry writes one JSON line per reed:audit message under <data_dir>/audit/, fields bounded', async () => {
    fixture = await startRegistry('none');
    publishAudit(event(1));
    publishAudit(event(2, { route: `/v1/tenants/a/plugins/${'x'.repeat(5_000)}`, plugin: 'p' }));
    const file = join(fixture.dir, 'data/audit/audit.log');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const [first, second] = lines(file);
    expect(first).toEqual({ ...event(1), plugin: null });
    expect(String(second?.route).length).toBe(1024);
    expect(second?.plugin).toBe('p');
    // Closed, it no longer listens.
    await fixture.registry.close();
    publishAudit(event(3));
    expect(lines(file)).toHaveLength(2);
  });

  it('rotates by size: at most maxFiles old files of at most maxBytes each, the newest line in audit.log', () => {
    const dir = tempDir();
    const log = new AuditLog(join(dir, 'audit'), { maxBytes: 2_048, maxFiles: 2 });
    log.start();
    for (let n = 0; n < 100; n++) publishAudit(event(n));
    log.close();
    expect(readdirSync(join(dir, 'audit')).sort()).toEqual(['audit.log', 'audit.log.1', 'audit.log.2']);
    for (const name of readdirSync(join(dir, 'audit')))
      expect(statSync(join(dir, 'audit', name)).size).toBeLessThanOrEqual(2_048);
    expect(lines(join(dir, 'audit/audit.log')).at(-1)?.tokenId).toBe('tok-99');
    const kept = [2, 1].flatMap((n) => lines(join(dir, `audit/audit.log.${n}`)));
    const all = [...kept, ...lines(join(dir, 'audit/audit.log'))].map((l) => l.tokenId);
    // Contiguous: nothing lost between the files kept.
    const firstKept = Number(String(all[0]).slice(4));
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => `tok-${firstKept + i}`));
  });

  it('never writes through a link placed at audit.log', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'audit'));
    const target = join(dir, 'elsewhere');
    writeFileSync(target, '');
    symlinkSync(target, join(dir, 'audit/audit.log'));
    expect(() => new AuditLog(join(dir, 'audit')).start()).toThrow(/ELOOP|symbolic/);
    publishAudit(event(1));
    expect(readFileSync(target, 'utf8')).toBe('');
    expect(existsSync(join(dir, 'audit/audit.log.1'))).toBe(false);
  });
});
