import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { expect, it } from 'vitest';
import { isReedError } from '../../src/errors.js';
import { subscribeEvent } from '../../src/events/events.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { TenantRegistry, type TenantRegistryOptions } from '../../src/tenants/registry.js';
import type { Tenant } from '../../src/tenants/tenant.js';
import { REPO } from './cli.js';
import type { LogLine } from './host.js';
import { tempDir } from './plugin-tree.js';
import { stream, tarDir } from './tar.js';

export const NOTES = 'example.notes-c';
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** A plugin directory holding a copy of example.notes-c (storage, events, log): every tenant gets the same id. */
export function notesDir(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  cpSync(join(REPO, 'examples/plugins/notes-c'), join(dir, 'notes-c'), { recursive: true });
  return dir;
}

export interface Fixture {
  dir: string;
  registry: TenantRegistry;
  logs: LogLine[];
  restart(): Promise<TenantRegistry>;
}

/**
 * A registry over a fresh data_dir, reed.toml declaring tenants `a` and `b` (each with notes-c), in `mode`.
 * `prepare` runs on the fixture's directory before the registry starts (its data_dir is `<dir>/data`).
 */
export async function startRegistry(
  mode: SandboxMode,
  extraToml = '',
  options: Partial<TenantRegistryOptions> = {},
  prepare?: (dir: string) => void,
): Promise<Fixture> {
  const dir = tempDir('reed-tenants-');
  prepare?.(dir);
  notesDir(dir, 'plugins-a');
  notesDir(dir, 'plugins-b');
  mkdirSync(join(dir, 'plugins'));
  writeFileSync(
    join(dir, 'reed.toml'),
    'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\ndefault_search_paths = false\n' +
      '[signatures]\nrequire = "none"\n' +
      '[tenants.a]\nplugin_dirs = ["plugins-a"]\n[tenants.b]\nplugin_dirs = ["plugins-b"]\n' +
      extraToml,
  );
  const logs: LogLine[] = [];
  const start = () =>
    TenantRegistry.start({
      config: loadHostConfig({ cwd: dir, env: {}, home: dir }),
      logger: pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as LogLine) }),
      forceMode: mode,
      ...options,
    });
  const fixture: Fixture = {
    dir,
    registry: await start(),
    logs,
    restart: async () => {
      await fixture.registry.close();
      fixture.registry = await start();
      return fixture.registry;
    },
  };
  return fixture;
}

/** The `quota_exceeded` a promise rejects with (its details checked), or a failure. */
export async function denied(call: Promise<unknown>, quota: string, limit: number): Promise<unknown> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toMatchObject({ code: 'quota_exceeded' });
  // In every mode, across a runner's socket too (a storage or event refusal met inside the plugin): which tenant,
  // which quota, its limit, and when to retry (null where waiting alone frees nothing).
  expect(isReedError(error) ? error.details : undefined).toMatchObject({
    tenant: expect.any(String),
    quota,
    limit,
    retryAfterMs: expect.toSatisfy((v: unknown) => v === null || (typeof v === 'number' && v >= 0)),
  });
  return error;
}

const ok = async (tenant: Tenant, fn: string, input: string) =>
  text((await tenant.call(NOTES, fn, input)).output);

/** The tests every mode runs: isolation of two tenants with the same plugin id, each admission quota, persistence. */
export function tenantSuite(mode: SandboxMode, fixture: () => Fixture, timeout = 60_000): void {
  const reg = () => fixture().registry;
  const must = (id: string): Tenant => {
    const t = reg().get(id);
    if (t === undefined) throw new Error(`no tenant ${id}`);
    return t;
  };

  it(
    'two tenants with the same plugin id share nothing: storage, calls, status, logs, data dirs',
    async () => {
      const [a, b] = [must('a'), must('b')];
      expect(
        reg()
          .list()
          .map((t) => t.id),
      ).toEqual(['default', 'a', 'b']);
      expect(must('default').status()).toEqual([]);
      expect(a.status().map((s) => [s.id, s.state, s.mode])).toEqual([[NOTES, 'ready', mode]]);
      expect(b.status().map((s) => [s.id, s.state, s.mode])).toEqual([[NOTES, 'ready', mode]]);
      const tenantsOfCalls: (string | undefined)[] = [];
      const unsubscribe = subscribeEvent('reed:call:finished', (e) => {
        if (e.pluginId === NOTES) tenantsOfCalls.push(e.tenant);
      });
      await ok(a, 'put', 'k=from-a');
      await expect(b.call(NOTES, 'get', 'k')).rejects.toMatchObject({ code: 'plugin_error' });
      await ok(b, 'put', 'k=from-b');
      expect(await ok(a, 'get', 'k')).toBe('from-a');
      expect(await ok(b, 'get', 'k')).toBe('from-b');
      unsubscribe();
      // The events of each tenant's host name the tenant.
      expect(tenantsOfCalls).toEqual(['a', 'b', 'b', 'a', 'b']);
      // Removing a's plugin leaves b's serving.
      await a.remove(NOTES);
      expect(a.status()).toEqual([]);
      expect(await ok(b, 'get', 'k')).toBe('from-b');
      // The plugin's own log line (init's printf) came once through each tenant's logger.
      const inits = fixture().logs.filter((l) => l.pluginId === NOTES && /notes ready/.test(l.msg));
      expect(inits.map((l) => l.tenant).sort()).toEqual(['a', 'b']);
      // Each tenant's host keeps its own data dir under data_dir/tenants/.
      expect(a.host.config.dataDir).toBe(join(fixture().dir, 'data/tenants/a/data'));
      expect(b.host.config.dataDir).toBe(join(fixture().dir, 'data/tenants/b/data'));
      const usage = reg().usage('b');
      expect(usage.plugins[NOTES]?.calls).toEqual({ ok: 3, plugin_error: 1 });
      expect(usage.plugins[NOTES]?.storageKeys).toBe(1);
      expect(usage.plugins[NOTES]?.sandboxStarts).toBeGreaterThanOrEqual(1);
      expect(usage.total.bytesIn).toBe('k'.length * 3 + 'k=from-b'.length);
      expect(usage.total.bytesOut).toBe('from-b'.length * 2);
      // A call to an id the tenant does not have counts in its total, under no plugin.
      await expect(b.call('made.up', 'f')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
      const after = reg().usage('b');
      expect(Object.keys(after.plugins)).toEqual([NOTES]);
      expect(after.total.calls.plugin_not_loaded).toBe(1);
    },
    timeout,
  );

  it(
    'each admission quota answers quota_exceeded while the other tenant keeps succeeding',
    async () => {
      const dir = fixture().dir;
      const b = must('b');
      const make = (id: string, quotas: Record<string, number>) =>
        reg().create(id, { plugin_dirs: [notesDir(dir, `q-${id}`)], quotas });

      // Calls in flight: the second call is refused while the first runs.
      const conc = await make('q-conc', { max_concurrent_calls: 1 });
      const first = conc.call(NOTES, 'put', 'x=1');
      const error = await denied(conc.call(NOTES, 'put', 'y=1'), 'max_concurrent_calls', 1);
      expect((error as { details: { retryAfterMs: unknown } }).details.retryAfterMs).toBeNull();
      expect(await ok(b, 'put', 'c=1')).toBe('');
      await first;
      expect(await ok(conc, 'get', 'x')).toBe('1');

      // Calls per second: a bucket of one that refills in 1,000 s.
      const rate = await make('q-rate', { calls_per_second: 0.001, calls_burst: 1 });
      await ok(rate, 'put', 'x=1');
      const r = await denied(rate.call(NOTES, 'get', 'x'), 'calls_per_second', 0.001);
      expect((r as { details: { retryAfterMs: number } }).details.retryAfterMs).toBeGreaterThan(900_000);
      expect(await ok(b, 'get', 'c')).toBe('1');

      // Storage keys across the tenant's plugins: a third key is refused, an existing one may change.
      const keys = await make('q-keys', { storage_keys: 2 });
      await ok(keys, 'put', 'k1=a');
      await ok(keys, 'put', 'k2=b');
      await denied(keys.call(NOTES, 'put', 'k3=c'), 'storage_keys', 2);
      await ok(keys, 'put', 'k2=changed');
      expect(await ok(keys, 'list', 'k')).toBe('k1\nk2\n');
      expect(await ok(b, 'put', 'k3=c')).toBe('');

      // Storage bytes: a value that would take the tenant past its bytes.
      const bytes = await make('q-bytes', { storage_bytes: 2_000 });
      await ok(bytes, 'put', 'small=1');
      await denied(bytes.call(NOTES, 'put', `big=${'x'.repeat(3_000)}`), 'storage_bytes', 2_000);
      await expect(bytes.call(NOTES, 'get', 'big')).rejects.toMatchObject({ code: 'plugin_error' });
      expect(await ok(b, 'put', `big=${'x'.repeat(3_000)}`)).toBe('');

      // Events per second: put emits notes.saved; the second within the second is refused (the call fails).
      const events = await make('q-events', { events_per_second: 0.001 });
      await ok(events, 'put', 'e1=1');
      await denied(events.call(NOTES, 'put', 'e2=1'), 'events_per_second', 0.001);
      expect(await ok(b, 'put', 'e2=1')).toBe('');

      // Plugins: one is loaded from its plugin_dirs; installing a second id is refused, nothing written.
      // With room for one more, two installs at once: the second is refused, the install under way counted.
      const plugins = await make('q-plugins', { max_plugins: 2 });
      const hello = await tarDir(join(REPO, 'examples/plugins/hello'));
      const wordcount = await tarDir(join(REPO, 'examples/plugins/wordcount'));
      const installing = plugins.install('example.hello', stream(hello));
      await denied(plugins.install('example.wordcount', stream(wordcount)), 'max_plugins', 2);
      expect((await installing).state).toBe('ready');
      await denied(plugins.install('example.wordcount', stream(wordcount)), 'max_plugins', 2);
      expect(plugins.status().map((s) => s.id)).toEqual([NOTES, 'example.hello']);
      expect((await b.install('example.hello', stream(hello))).state).toBe('ready');

      const usage = reg().usage('q-rate');
      expect(usage.denied).toEqual({ calls_per_second: 1 });
      expect(reg().usage('q-events').denied).toEqual({ events_per_second: 1 });
      expect(reg().usage('b').denied).toEqual({});
    },
    timeout,
  );

  it(
    'a tenant created at runtime is back after a restart, with its data; removed, it is not',
    async () => {
      const dir = fixture().dir;
      const spec = { plugin_dirs: [notesDir(dir, 'rt-plugins')], quotas: { max_concurrent_calls: 7 } };
      const rt = await reg().create('rt', spec);
      expect(rt.origin).toBe('runtime');
      await ok(rt, 'put', 'kept=yes');
      await expect(reg().create('a', {})).rejects.toMatchObject({ code: 'tenant_exists' });
      await expect(reg().create('Bad_Id', {})).rejects.toMatchObject({ code: 'tenant_invalid' });
      await expect(reg().create('bad', { plugin_dirs: ['relative'] })).rejects.toMatchObject({
        code: 'tenant_invalid',
      });
      await expect(reg().create('bad', { quotas: { filesystem_bytes: 1_000 } })).rejects.toMatchObject({
        code: 'tenant_invalid',
      });
      await expect(reg().create('bad', { quotas: { max_plugin: 3 } as never })).rejects.toMatchObject({
        code: 'tenant_invalid',
      });

      // Created again with another spec: updated in place, its data kept.
      const updated = { ...spec, quotas: { max_concurrent_calls: 8 } };
      const rtUpdated = await reg().create('rt', updated);
      expect(rtUpdated.spec).toEqual(updated);
      expect(await ok(rtUpdated, 'get', 'kept')).toBe('yes');

      const again = await fixture().restart();
      const back = again.get('rt');
      expect(back?.origin).toBe('runtime');
      expect(back?.spec).toEqual(updated);
      expect(back === undefined ? '' : await ok(back, 'get', 'kept')).toBe('yes');
      expect(again.get('bad')).toBeUndefined();

      await again.remove('rt');
      await expect(again.remove('a')).rejects.toMatchObject({ code: 'tenant_invalid' });
      await expect(again.remove('nope')).rejects.toMatchObject({ code: 'tenant_not_found' });
      expect(() => again.usage('rt')).toThrow(expect.objectContaining({ code: 'tenant_not_found' }));
      const third = await fixture().restart();
      expect(third.get('rt')).toBeUndefined();
      // Its data was kept aside (no purge), listed, and never given to the next tenant of that id: created again,
      // it starts empty (before: it found the removed tenant's data).
      const kept = third.removedData();
      expect(kept.map((d) => [d.tenant, d.generation?.length])).toEqual([['rt', 16]]);
      const rt2 = await third.create('rt', spec);
      expect(rt2.status().map((s) => s.state)).toEqual(['ready']);
      await expect(rt2.call(NOTES, 'get', 'kept')).rejects.toMatchObject({ code: 'plugin_error' });
      await ok(rt2, 'put', 'second=yes');
      expect(third.removedData('rt')).toEqual(kept);
      expect(third.removedData('a')).toEqual([]);
      // Purged: the removed tenant's data goes, the live tenant's stays.
      expect(await third.purgeRemoved('rt')).toEqual(kept);
      expect(existsSync(kept[0]?.path ?? '')).toBe(false);
      expect(third.removedData()).toEqual([]);
      await expect(third.purgeRemoved('rt')).rejects.toMatchObject({ code: 'tenant_not_found' });
      expect(await ok(rt2, 'get', 'second')).toBe('yes');
      // Removed with purge: nothing is kept, nothing listed; created again, empty.
      await third.remove('rt', { purge: true });
      expect(third.removedData()).toEqual([]);
      const rt3 = await third.create('rt', spec);
      expect(rt3.status().map((s) => [s.state, s.error?.code, s.error?.message])).toEqual([
        ['ready', undefined, undefined],
      ]);
      await expect(rt3.call(NOTES, 'get', 'second')).rejects.toMatchObject({ code: 'plugin_error' });
    },
    timeout,
  );
}
