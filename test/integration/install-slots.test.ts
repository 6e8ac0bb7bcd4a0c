// The host-wide bound on archives taken in at once (src/host/install-slots.ts): before it, N tenants uploading at once
// made N extractions (each writing and fsyncing up to 10,000 files) and N scans run together. Installs past
// `[lifecycle] max_concurrent_installs` wait in a queue of `install_queue`; one more is refused with install_busy
// (HTTP 503, Retry-After). Asserted without times: an archive whose bytes the test holds back keeps its slot.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { INSTALLS_PER_OWNER, InstallSlots } from '../../src/host/install-slots.js';
import { extractPluginTar } from '../../src/host/tar-intake.js';
import { failureHeaders, statusOf } from '../../src/server/answers.js';
import { TenantRegistry } from '../../src/tenants/registry.js';
import { EXAMPLES, helloToml } from '../helpers/lifecycle.js';
import { tempDir } from '../helpers/plugin-tree.js';
import { stream, tarOf } from '../helpers/tar.js';

const ID = 'example.hello';
const wasm = () => readFileSync(join(EXAMPLES, 'hello', 'plugin.wasm'));
const archive = (greeting: string) =>
  tarOf([
    { name: 'plugin.toml', content: helloToml('1.0.0', greeting) },
    { name: 'plugin.wasm', content: wasm() },
  ]);

/** A promise's rejection (or a failure when it resolves). */
const refusal = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );

describe('InstallSlots', () => {
  it('runs at most `max` at once, the rest in arrival order, and refuses past the queue without running it', async () => {
    const slots = new InstallSlots(2, 2);
    const order: string[] = [];
    const gates = new Map<string, () => void>();
    const work = (name: string) => () =>
      new Promise<string>((resolve) => {
        order.push(name);
        gates.set(name, () => resolve(name));
      });
    const runs = ['a', 'b', 'c', 'd'].map((n) => slots.run(work(n)));
    const e = await refusal(slots.run(work('e'), 'p.e'));
    expect(e).toMatchObject({
      code: 'install_busy',
      pluginId: 'p.e',
      details: { maxConcurrentInstalls: 2, installQueue: 2, retryAfterMs: 1_000 },
    });
    await Promise.resolve();
    expect(order).toEqual(['a', 'b']);
    expect([slots.active, slots.waiting]).toEqual([2, 2]);
    gates.get('b')?.();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['a', 'b', 'c']);
    expect([slots.active, slots.waiting]).toEqual([2, 1]);
    gates.get('a')?.();
    gates.get('c')?.();
    await new Promise((r) => setImmediate(r));
    gates.get('d')?.();
    expect(await Promise.all(runs)).toEqual(['a', 'b', 'c', 'd']);
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    expect([slots.active, slots.waiting]).toEqual([0, 0]);
  });

  it('gives the slot back when the work fails, and with no queue refuses at once when full', async () => {
    const slots = new InstallSlots(1, 0);
    await expect(slots.run(() => Promise.reject(new Error('bad archive')))).rejects.toThrow('bad archive');
    expect(slots.active).toBe(0);
    let open: () => void = () => {};
    const held = slots.run(() => new Promise<void>((resolve) => (open = resolve)));
    expect(await refusal(slots.run(() => Promise.resolve()))).toMatchObject({ code: 'install_busy' });
    open();
    await held;
    await expect(slots.run(() => Promise.resolve(7))).resolves.toBe(7);
    expect(() => new InstallSlots(0, 1)).toThrow(RangeError);
    expect(() => new InstallSlots(1, -1)).toThrow(RangeError);
  });

  it('gives one owner (a tenant) at most INSTALLS_PER_OWNER, wherever the queue is (the seventh review)', async () => {
    const slots = new InstallSlots(2, 16);
    const tenantA = {};
    const tenantB = {};
    const gates: (() => void)[] = [];
    const work = () => () => new Promise<void>((resolve) => gates.push(resolve));
    const held = Array.from({ length: INSTALLS_PER_OWNER }, () => slots.run(work(), 'p.a', tenantA));
    // A's next is refused though the queue is empty; B is taken in (A holds both slots: B waits, not refused).
    expect(await refusal(slots.run(work(), 'p.a3', tenantA))).toMatchObject({
      code: 'install_busy',
      pluginId: 'p.a3',
      details: { installsPerTenant: INSTALLS_PER_OWNER, retryAfterMs: 1_000 },
    });
    const b = slots.run(work(), 'p.b', tenantB);
    expect([slots.active, slots.waiting]).toEqual([2, 1]);
    // One of A's ends: B gets its slot, and A may queue one more.
    gates.shift()?.();
    await held[0];
    await new Promise((r) => setImmediate(r));
    const again = slots.run(work(), 'p.a4', tenantA);
    expect([slots.active, slots.waiting]).toEqual([2, 1]);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setImmediate(r));
      gates.shift()?.();
    }
    await Promise.all([...held, b, again]);
    expect([slots.active, slots.waiting]).toEqual([0, 0]);
  });

  it('an intake from a source destroyed without an error fails (premature close) and frees its slot', async () => {
    const slots = new InstallSlots(1, 0);
    const source = new PassThrough();
    source.write((await archive('x')).subarray(0, 512));
    const into = tempDir('reed-intake-destroyed-');
    const taking = slots.run(
      () => extractPluginTar(source, into, loadHostConfig({ cwd: into, env: {}, home: into }).fileLimits, ID),
      ID,
    );
    source.destroy();
    expect(await refusal(taking)).toMatchObject({ code: 'install_archive_invalid' });
    expect(slots.active).toBe(0);
  });

  it('is answered 503 with Retry-After by the API', () => {
    const busy = new ReedError('install_busy', 'x', { details: { retryAfterMs: 1_000 } });
    expect(statusOf(busy)).toBe(503);
    expect(failureHeaders(busy)).toEqual([['Retry-After', '1']]);
  });
});

describe('installs of several tenants at once (mode none)', () => {
  let registry: TenantRegistry | undefined;
  afterEach(async () => {
    await registry?.close();
    registry = undefined;
  });

  it('share reed.toml\u2019s bound: one taken in, one queued, the next refused; then both served', async () => {
    const dir = tempDir('reed-install-slots-');
    writeFileSync(
      join(dir, 'reed.toml'),
      'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\ndefault_search_paths = false\n' +
        'plugin_dirs = []\n[signatures]\nrequire = "none"\n' +
        '[lifecycle]\nprobation_ms = 0\nmax_concurrent_installs = 1\ninstall_queue = 1\n' +
        '[tenants.a]\nplugin_dirs = []\n[tenants.b]\nplugin_dirs = []\n',
    );
    const config = loadHostConfig({ cwd: dir, env: {}, home: dir });
    expect(config.lifecycle).toMatchObject({ maxConcurrentInstalls: 1, installQueue: 1 });
    registry = await TenantRegistry.start({
      config,
      logger: pino({ level: 'silent' }),
      forceMode: 'none',
      audit: false,
    });
    const tenant = (id: string) => {
      const t = registry?.get(id);
      if (t === undefined) throw new Error(`no tenant ${id}`);
      return t;
    };
    // Tenant a's archive: its first block only, the rest held back, so its intake holds the one slot.
    const aBytes = await archive('From a');
    const aBody = new PassThrough();
    aBody.write(aBytes.subarray(0, 512));
    const a = tenant('a').install(ID, aBody);
    const b = tenant('b').install(ID, stream(await archive('From b')));
    const refusedBody = stream(await archive('From default'));
    const refused = await refusal(tenant('default').install(ID, refusedBody));
    expect(refused).toMatchObject({
      code: 'install_busy',
      pluginId: ID,
      details: { maxConcurrentInstalls: 1, installQueue: 1 },
    });
    expect(refusedBody.readableFlowing).toBe(true); // refused unread, its body drained
    expect(statusOf(refused as ReedError)).toBe(503);
    // b's install waits in the queue while a holds the slot: nothing of it is served yet.
    expect(tenant('b').status()).toEqual([]);
    aBody.end(aBytes.subarray(512));
    await expect(a).resolves.toMatchObject({ id: ID, state: 'ready' });
    await expect(b).resolves.toMatchObject({ id: ID, state: 'ready' });
    // The slot and the queue are free again: the default tenant's install is taken now.
    await expect(tenant('default').install(ID, stream(await archive('From default')))).resolves.toMatchObject(
      {
        id: ID,
        state: 'ready',
      },
    );
  });
});
