import { describe, expect, it } from 'vitest';
import { MemoryEventBus, MemoryStorage } from '../../src/host/services.js';
import { quotaExceeded, TokenBucket } from '../../src/tenants/quota.js';
import { TenantEventBus, TenantStorage } from '../../src/tenants/tenant-services.js';

const bytes = (n: number) => new Uint8Array(n);

describe('tenant quotas', () => {
  it('the token bucket starts full, refills at its rate, and says when the next token comes', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([undefined, undefined, undefined]);
    expect(bucket.take()).toBe(500);
    now = 250;
    expect(bucket.take()).toBe(250);
    now = 500;
    expect(bucket.take()).toBeUndefined();
    // Idle for a minute: refilled to the burst, never past it.
    now = 60_500;
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([
      undefined,
      undefined,
      undefined,
      500,
    ]);
  });

  it('quota_exceeded names the tenant, quota, limit and retry', () => {
    const e = quotaExceeded('acme', 'calls_per_second', 5, 'a call is past its calls per second', 200, 'seo');
    expect(e).toMatchObject({
      code: 'quota_exceeded',
      pluginId: 'seo',
      details: { tenant: 'acme', quota: 'calls_per_second', limit: 5, retryAfterMs: 200 },
    });
    expect(e.message).toContain('tenant "acme", plugin "seo"');
  });

  it('storage bytes and keys are summed over the tenant\u2019s plugins, and freed by delete', () => {
    const inner = new MemoryStorage();
    inner.put('old', 'k', bytes(10), 1e9);
    const storage = new TenantStorage(inner, 'acme', { storage_keys: 3 });
    storage.space('old');
    storage.put('p1', 'a', bytes(1), 1e9);
    storage.put('p2', 'b', bytes(1), 1e9);
    expect(() => storage.put('p2', 'c', bytes(1), 1e9)).toThrow(
      expect.objectContaining({
        code: 'quota_exceeded',
        details: expect.objectContaining({ quota: 'storage_keys' }),
      }),
    );
    storage.put('p2', 'b', bytes(5), 1e9);
    expect(storage.delete('p1', 'a')).toBe(true);
    storage.put('p2', 'c', bytes(1), 1e9);
    expect(storage.total()).toEqual({
      bytes: inner.usage('old') + inner.usage('p1') + inner.usage('p2'),
      keys: 3,
    });

    const bounded = new TenantStorage(new MemoryStorage(), 'acme', { storage_bytes: 1_000 });
    bounded.put('p1', 'a', bytes(10), 1e9);
    expect(() => bounded.put('p2', 'b', bytes(2_000), 1e9)).toThrow(
      expect.objectContaining({
        code: 'quota_exceeded',
        details: expect.objectContaining({ quota: 'storage_bytes' }),
      }),
    );
    expect(bounded.get('p2', 'b')).toBeUndefined();
    // A plugin's own quota still holds inside the tenant's.
    expect(() => bounded.put('p1', 'c', bytes(10), 1)).toThrow(
      expect.objectContaining({ code: 'storage_quota_exceeded' }),
    );
  });

  it('events past events_per_second are refused and never delivered', () => {
    const inner = new MemoryEventBus();
    const seen: string[] = [];
    inner.subscribe('*', (e) => seen.push(e.topic));
    const bus = new TenantEventBus(inner, 'acme', { events_per_second: 0.001 });
    bus.emit({ topic: 'one', data: null, source: 'p' });
    expect(() => bus.emit({ topic: 'two', data: null, source: 'p' })).toThrow(
      expect.objectContaining({
        code: 'quota_exceeded',
        details: expect.objectContaining({ quota: 'events_per_second' }),
      }),
    );
    expect(seen).toEqual(['one']);
    expect(bus.denied).toBe(1);
  });
});
