import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LIMIT_CEILINGS,
  DEFAULT_LIMITS,
  effectiveLimits,
  LIMIT_FIELDS,
  limitsFromToml,
} from '../../src/manifest/limits.js';
import { LimitsSchema } from '../../src/manifest/schema.js';

describe('limits: one map between TOML names and camelCase', () => {
  it('names every limit the schema accepts, and no other', () => {
    expect(Object.values(LIMIT_FIELDS).sort()).toEqual(Object.keys(LimitsSchema.properties).sort());
    expect(Object.keys(LIMIT_FIELDS).sort()).toEqual(Object.keys(DEFAULT_LIMITS).sort());
    expect(Object.keys(DEFAULT_LIMIT_CEILINGS).sort()).toEqual(Object.keys(DEFAULT_LIMITS).sort());
  });

  it('reads a [limits] table into camelCase and drops keys that are not limits', () => {
    const table = JSON.parse('{"memory_mb":8,"call_timeout_ms":250,"no_such_limit":1,"__proto__":2}');
    expect(limitsFromToml(table)).toEqual({ memoryMb: 8, callTimeoutMs: 250 });
    expect(limitsFromToml(undefined)).toEqual({});
  });

  it('has the data directory quotas (permissions.filesystem): disk_mb and max_files, with defaults and ceilings', () => {
    expect(LIMIT_FIELDS).toMatchObject({ diskMb: 'disk_mb', maxFiles: 'max_files' });
    expect([DEFAULT_LIMITS.diskMb, DEFAULT_LIMITS.maxFiles]).toEqual([64, 10_000]);
    expect([DEFAULT_LIMIT_CEILINGS.diskMb, DEFAULT_LIMIT_CEILINGS.maxFiles]).toEqual([16_384, 1_000_000]);
    expect(limitsFromToml({ disk_mb: 8, max_files: 20 })).toEqual({ diskMb: 8, maxFiles: 20 });
  });

  it('lays the asks over the defaults without touching the defaults', () => {
    const limits = effectiveLimits({ pids: 7 });
    expect(limits).toEqual({ ...DEFAULT_LIMITS, pids: 7 });
    expect(DEFAULT_LIMITS.pids).not.toBe(7);
    expect(effectiveLimits({ cpus: 2 }, DEFAULT_LIMIT_CEILINGS).cpus).toBe(2);
  });
});
