import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LmdbStorage } from '../../src/host/lmdb-storage.js';
import { MemoryEventBus, MemoryStorage } from '../../src/host/services.js';
import { quotaExceeded, TokenBucket } from '../../src/tenants/quota.js';
import { TenantEventBus, TenantStorage } from '../../src/tenants/tenant-services.js';
import { tempDir } from '../helpers/plugin-tree.js';

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
    // No stack captured (the cost of a refusal a flooding tenant makes by the ten thousand), and the process's
    // own limit is back for every other error.
    expect(e.stack).not.toMatch(/\n\s+at /);
    expect(new Error('x').stack).toMatch(/\n\s+at /);
  });

  it('storage bytes and keys are summed over the tenant\u2019s plugins, and freed by delete', () => {
    const inner = new MemoryStorage();
    inner.put('old', 'k', bytes(10), 1e9);
    const storage = new TenantStorage(inner, 'acme', { storage_keys: 3 });
    // A plugin no longer loaded still holds its data: seeded from the store, it counts.
    storage.seed();
    expect(storage.total().keys).toBe(1);
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

  it('LMDB names every namespace that holds an entry, one seek each', () => {
    const store = new LmdbStorage(join(tempDir(), 'storage'));
    try {
      expect(store.namespaces()).toEqual([]);
      store.put('b.plugin', 'k', bytes(1), 1e9);
      store.put('a', 'x', bytes(1), 1e9);
      store.put('a', 'y', bytes(1), 1e9);
      store.put('a.b', '', bytes(1), 1e9);
      store.put('c', 'gone', bytes(1), 1e9);
      store.delete('c', 'gone');
      expect(store.namespaces()).toEqual(['a', 'a.b', 'b.plugin']);
    } finally {
      store.close();
    }
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
