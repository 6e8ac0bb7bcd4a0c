// Fuel with the counter in a function's local (src/runtime/wasm/instrument-code.ts, docs/ABI-wasm.md "How fuel
// works"): endless control flow of every shape still ends with fuel_exhausted, and fuel spent anywhere (a callee,
// a callee that threw or trapped, the host) reaches the call's total whichever way control came back. The
// plugin: test/fixtures/hostile/fuel-shapes/plugin.wat.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { FUEL_PER_HOST_CALL } from '../../src/runtime/wasm/abi.js';
import { EXCEPTION_COSTS } from '../../src/runtime/wasm/instrument-code.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';

const HOSTILE = join(REPO, 'test/fixtures/hostile');
const ID = 'hostile.fuel-shapes';

describe.each<SandboxMode>(['none', 'process'])('fuel in a function-local counter (mode %s)', (mode) => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await startHost([HOSTILE], {
      mode,
      plugins: [ID],
      // Each endless call ends within milliseconds; the deadline is far behind, so only fuel can end them.
      reedToml: '[limits]\nfuel_per_call = 20000000\ncall_timeout_ms = 60000\n',
    }));
  });
  afterAll(() => host?.close());

  /** The fuel a call with an input of `n` bytes was charged. */
  const fuel = async (fn: string, n: number) => (await host.call(ID, fn, 'x'.repeat(n))).stats.fuelConsumed;

  it.each([
    ['tail_forever', 'mutual tail recursion through call_indirect (function entries only)'],
    ['br_table_loop', 'a loop whose back edge is a br_table'],
    ['catch_loop', 'a loop round a callee that throws, caught each time'],
    ['rethrow_loop', 'a loop round a throw, catch and rethrow'],
    ['deep_throw_loop', 'a loop round a throw from a thousand frames down'],
    ['callee_spins', 'a callee looping with its fuel in its own local'],
  ])('%s (%s) ends with fuel_exhausted, and the plugin serves again', async (fn) => {
    await expect(host.call(ID, fn)).rejects.toMatchObject({ code: 'fuel_exhausted', pluginId: ID });
    expect((await host.call(ID, 'ok')).output).toHaveLength(0);
  });

  it('deep mutual recursion through call_indirect is charged per call, the same every time', async () => {
    const [a, b, c] = [await fuel('deep', 1000), await fuel('deep', 2000), await fuel('deep', 3000)];
    expect(b - a).toBeGreaterThan(1000);
    expect(c - b).toBe(b - a);
    expect(await fuel('deep', 2000)).toBe(b);
  });

  it('the work a callee did before it threw is charged to the call (the catch reads the global)', async () => {
    const [caught1, caught2] = [await fuel('work_caught', 1000), await fuel('work_caught', 2000)];
    const [returned1, returned2] = [await fuel('work_returned', 1000), await fuel('work_returned', 2000)];
    expect(returned2 - returned1).toBeGreaterThan(1000);
    expect(caught2 - caught1).toBe(returned2 - returned1);
  });

  it('each frame an exception unwinds is charged when its handler starts', async () => {
    const [a, b] = [await fuel('deep_throw', 1000), await fuel('deep_throw', 2000)];
    expect(b - a).toBeGreaterThanOrEqual(1000 * 2 ** EXCEPTION_COSTS.frameShift);
    expect(a).toBeGreaterThanOrEqual(EXCEPTION_COSTS.throw);
  });

  it('host imports are charged on top of the caller’s own counting (the caller reads the global back)', async () => {
    const [a, b] = [await fuel('host_calls', 1000), await fuel('host_calls', 2000)];
    expect(b - a).toBeGreaterThanOrEqual(1000 * FUEL_PER_HOST_CALL);
  });

  it('a loop left by a br_if out of the function is charged per iteration', async () => {
    const [a, b, c] = [
      await fuel('br_if_return', 1000),
      await fuel('br_if_return', 2000),
      await fuel('br_if_return', 3000),
    ];
    expect(b - a).toBeGreaterThan(1000);
    expect(c - b).toBe(b - a);
  });

  it('a callee that works and then traps fails the call with wasm_trap, not fuel_exhausted', async () => {
    await expect(host.call(ID, 'callee_traps', 'x'.repeat(1000))).rejects.toMatchObject({
      code: 'wasm_trap',
      pluginId: ID,
    });
    expect((await host.call(ID, 'ok')).output).toHaveLength(0);
  });
});
