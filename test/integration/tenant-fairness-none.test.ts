import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { MemoryStorage } from '../../src/host/services.js';
import { TenantRegistry } from '../../src/tenants/registry.js';
import { PROMPT_REFUSALS_BURST, RELEASED_PER_TURN, TenantHost } from '../../src/tenants/tenant-host.js';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { buildWasiC } from '../helpers/wasm-c.js';

/**
 * Issue 14, fairness on the host's one thread in mode none: a call runs to its end on that thread, so a tenant
 * with many calls at once (or a client calling again as each returns) used to run them all back to back while
 * another tenant's call, arriving by a timer or a socket, waited for the last. A tenant's calls now take at most
 * TURN_SLICE_MS of a turn of the event loop (and one call past it); the rest start in later turns, in order.
 */
const SOURCE = `
#include <stdint.h>
__attribute__((import_module("reed"), import_name("input_read")))
int32_t input_read(char *buf, int32_t len, int32_t offset);
__attribute__((import_module("reed"), import_name("output_write")))
int32_t output_write(const char *buf, int32_t len);
static char buf[256];
static volatile uint64_t sink;
/* A million loop iterations (far more than the slice on any machine, well under a second), then its input back. */
__attribute__((export_name("spin"))) int32_t spin(void) {
  for (uint32_t i = 0; i < 1000000; i++) sink += i;
  output_write(buf, input_read(buf, sizeof buf, 0));
  return 0;
}
__attribute__((export_name("ok"))) int32_t ok(void) { return 0; }
/* Grows the memory by 1 MiB; traps when the grow is refused, as a C program's failed allocation would abort. */
__attribute__((export_name("grow"))) int32_t grow(void) {
  if (__builtin_wasm_memory_grow(0, 16) == (__SIZE_TYPE__)-1) __builtin_trap();
  return 0;
}
`;

const registries: TenantRegistry[] = [];
afterEach(async () => {
  for (const r of registries.splice(0)) await r.close();
});

async function start(quotasA = 'max_concurrent_calls = 64') {
  const wasm = buildWasiC(SOURCE, { reactor: true });
  const dir = tempDir('reed-tenant-fair-');
  for (const t of ['a', 'b'])
    writePlugin(
      join(dir, `plugins-${t}`),
      'fair.load',
      { id: 'fair.load', entry_point: 'plugin.wasm', sandbox: { mode: 'none' } },
      { 'plugin.wasm': wasm },
    );
  writeFileSync(
    join(dir, 'reed.toml'),
    'cache_dir = "cache"\ndata_dir = "data"\nruntime_dir = "runtime"\n[signatures]\nrequire = "none"\n' +
      `[tenants.a]\nplugin_dirs = ["plugins-a"]\n[tenants.a.quotas]\n${quotasA}\n` +
      '[tenants.b]\nplugin_dirs = ["plugins-b"]\n',
  );
  const registry = await TenantRegistry.start({
    config: loadHostConfig({ cwd: dir, env: {}, home: dir, overrides: { defaultSearchPaths: false } }),
    forceMode: 'none',
    logger: pino({ level: 'silent' }),
    storage: () => new MemoryStorage(),
    audit: false,
  });
  registries.push(registry);
  const a = registry.get('a');
  const b = registry.get('b');
  if (!(a instanceof TenantHost) || !(b instanceof TenantHost))
    throw new Error('tenants a and b did not start');
  // Instantiated and warm.
  await a.call('fair.load', 'ok');
  await b.call('fair.load', 'ok');
  return { a, b };
}

describe('mode none: fairness on the host’s one thread', () => {
  it('a tenant’s calls made at once do not all run before another tenant’s call that arrives meanwhile', async () => {
    const { a, b } = await start();
    // Everything before this point ran in earlier turns of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    let aDone = 0;
    // B's call arrives in the next turn, as one from a socket or a timer would.
    const bSaw = new Promise<{ done: number; inFlight: number }>((resolve) => {
      setImmediate(() => {
        void b.call('fair.load', 'ok').then(() => resolve({ done: aDone, inFlight: a.inFlight }));
      });
    });
    const inputs = Array.from({ length: 20 }, (_, i) => `call ${i}`);
    const outputs = await Promise.all(
      inputs.map((input) =>
        a.call('fair.load', 'spin', input).then((r) => {
          aDone++;
          return Buffer.from(r.output).toString();
        }),
      ),
    );
    // Before: all 20 of A's calls ran in the turn they were made, and B's call after the last of them.
    const saw = await bSaw;
    expect(saw.done).toBeLessThan(20);
    // The calls waiting for a later turn count in flight (max_concurrent_calls bounds them).
    expect(saw.done + saw.inFlight).toBe(20);
    expect(a.deferredCalls).toBeGreaterThan(0);
    // Every one of A's calls ran, in order, with its own input; none was refused.
    expect(outputs).toEqual(inputs);
    expect(a.usage().total.calls).toEqual({ ok: 21 });
    expect(a.inFlight).toBe(0);
  }, 60_000);

  it('a call of a function that lately took longer than the slice waits for the next turn, unless it is the turn\u2019s first', async () => {
    const { a } = await start();
    // Its time is known now: a million iterations, far more than the slice.
    await a.call('fair.load', 'spin', 'first');
    await new Promise((resolve) => setImmediate(resolve));
    const before = a.deferredCalls;
    const order: string[] = [];
    await Promise.all([
      a.call('fair.load', 'ok').then(() => order.push('ok')),
      a.call('fair.load', 'spin', 'second').then((r) => order.push(Buffer.from(r.output).toString())),
    ]);
    // Before: the spin started at once behind the cheap call, well within the slice, and ran on past it.
    expect(a.deferredCalls - before).toBe(1);
    expect(order).toEqual(['ok', 'second']);
    // The first call of a turn starts at once, however long it takes.
    await new Promise((resolve) => setImmediate(resolve));
    const first = a.deferredCalls;
    await a.call('fair.load', 'spin', 'third');
    expect(a.deferredCalls).toBe(first);
    expect(a.usage().total.calls).toEqual({ ok: 5 });
  }, 60_000);
});

describe('mode none: a tenant whose fuel per second is spent', () => {
  it('is refused at admission until it has fuel again, not on the host’s call path each time', async () => {
    // One spin is millions of fuel: hundreds of seconds of 10,000 a second.
    const { a, b } = await start('fuel_per_second = 10000');
    await a.call('fair.load', 'spin');
    const refusals = [];
    for (let i = 0; i < 4; i++)
      refusals.push(
        await a.call('fair.load', 'ok').then(
          () => undefined,
          (e: unknown) => e,
        ),
      );
    for (const e of refusals)
      expect(e).toMatchObject({
        code: 'quota_exceeded',
        details: { quota: 'fuel_per_second', limit: 10_000, tenant: 'a', retryAfterMs: expect.any(Number) },
      });
    const usage = a.usage();
    // The first refusal came from the sandbox (a call that reached the host); the 3 after it never did.
    expect(usage.total.calls).toEqual({ ok: 2, quota_exceeded: 1 });
    expect(usage.denied).toEqual({ fuel_per_second: 3 });
    await b.call('fair.load', 'spin');
  }, 60_000);
});

/**
 * 300 calls at once to a tenant whose calls_per_second (1) is spent: one admitted, 299 refused. Returns them with the
 * count of refusals answered so far, read after the turn they were made in (`settled` goes on counting).
 */
async function refusedAtOnce(a: TenantHost): Promise<{ calls: Promise<string>[]; settled: number }> {
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  const refusing = { calls: [] as Promise<string>[], settled: 0 };
  refusing.calls = Array.from({ length: 300 }, () =>
    a.call('fair.load', 'ok').then(
      () => 'ok',
      (e: { code: string; details: { quota: string } }) => {
        refusing.settled++;
        return `${e.code} ${e.details.quota}`;
      },
    ),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return refusing;
}

describe('a tenant refused continuously', () => {
  it('has its refusals past PROMPT_REFUSALS_BURST answered together a moment later, not each at once', async () => {
    const { a, b } = await start('calls_per_second = 1');
    const refusing = await refusedAtOnce(a);
    const { calls } = refusing;
    const prompt = refusing.settled;
    // Before: all 299 refusals were answered in the turn they were made.
    expect(prompt).toBeGreaterThanOrEqual(PROMPT_REFUSALS_BURST);
    expect(prompt).toBeLessThan(299);
    // B is not held meanwhile.
    await b.call('fair.load', 'ok');
    const outcomes = await Promise.all(calls);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'quota_exceeded calls_per_second')).toHaveLength(299);
    expect(a.heldRefusals).toBe(299 - prompt);
    expect(b.heldRefusals).toBe(0);
  }, 60_000);

  it('has its held refusals answered a few a turn of the event loop, not all in one', async () => {
    const { a } = await start('calls_per_second = 1');
    const refusing = await refusedAtOnce(a);
    const { calls } = refusing;
    const prompt = refusing.settled;
    // Then, each turn of the event loop (its timers, then its immediates), how many more were answered.
    const perTurn: number[] = [];
    while (refusing.settled < 299) {
      const before = refusing.settled;
      await new Promise((resolve) => setImmediate(resolve));
      if (refusing.settled > before) perTurn.push(refusing.settled - before);
    }
    // Before: the 299 - prompt held refusals were all answered in the timer's one callback.
    expect(perTurn.reduce((x, y) => x + y, 0)).toBe(299 - prompt);
    expect(Math.max(...perTurn)).toBeLessThanOrEqual(2 * RELEASED_PER_TURN);
    const outcomes = await Promise.all(calls);
    expect(outcomes.filter((o) => o === 'quota_exceeded calls_per_second')).toHaveLength(299);
    expect(a.usage().denied).toEqual({ calls_per_second: 299 });
  }, 60_000);

  it('has the refusals its sandbox makes to retry later (memory_mb after a churn) held as those at admission', async () => {
    const { a } = await start('memory_mb = 3');
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: { code: string; details: { quota: string; retryAfterMs: number | null } }) => e,
      );
    // Churned 5 times (grown until the quota refused a grow and it trapped): held 50, 100, 200, 400, then 800 ms.
    for (let churns = 0; churns < 5; ) {
      const e = await failure(a.call('fair.load', 'grow'));
      if (e?.details.quota === 'memory_mb' && e.details.retryAfterMs === null) churns++;
      else if (e !== undefined)
        await new Promise((resolve) => setTimeout(resolve, e.details.retryAfterMs ?? 1));
    }
    const held = a.heldRefusals;
    const outcomes = await Promise.all(Array.from({ length: 300 }, () => failure(a.call('fair.load', 'ok'))));
    const refused = outcomes.filter((e) => e !== undefined);
    for (const e of refused)
      expect(e).toMatchObject({
        code: 'quota_exceeded',
        details: { quota: 'memory_mb', limit: 3, tenant: 'a', retryAfterMs: expect.any(Number) },
      });
    // Before: each was answered at once (the sandbox's refusals never went through the tenant's hold).
    expect(refused.length).toBeGreaterThan(PROMPT_REFUSALS_BURST);
    expect(a.heldRefusals - held).toBeGreaterThan(0);
    expect(a.heldRefusals - held).toBeLessThanOrEqual(refused.length - PROMPT_REFUSALS_BURST);
  }, 60_000);
});
