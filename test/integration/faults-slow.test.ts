import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runSoak, soakProblems } from '../../bench/soak.js';

/**
 * Issue 17, part 2 (docs/RELIABILITY.md, "Faults during load"): a slow plugin backing up its queue, in process
 * mode. Beside the soak's ten plugins and their checked callers (bench/soak.ts), `soak.slow` (the WASM example's
 * `spin`, which runs until its fuel ends: fuel_per_call 100,000,000 and call_timeout_ms 1000, so each call spins a
 * large part of its deadline) gets 12 callers of its own for the first part of the run. Its calls fail with the
 * documented codes of a call that ran out of fuel or time (`fuel_exhausted`, `call_timeout`, then `sandbox_crashed`
 * for the calls queued in the runner the deadline killed, and `plugin_failed` while its breaker is open); every
 * call of every other plugin succeeds, and their median latency is printed beside the same plugins' in a run
 * without the slow one. Once its callers stop, the slow plugin answers an `echo` again (recovery printed).
 * Needs `npm run build` (the runners run from dist/).
 */
const HELLO = join(fileURLToPath(new URL('.', import.meta.url)), '../../examples/plugins/hello');
const SLOW = 'soak.slow';
const SLOW_CODES = ['fuel_exhausted', 'call_timeout', 'sandbox_crashed', 'plugin_failed'];
const SECONDS = 18;
const SLOW_FOR_MS = 10_000;

const medianOfOthers = (perPlugin: Record<string, { okP50Ms: number }>) => {
  const values = Object.entries(perPlugin)
    .filter(([id]) => id !== SLOW)
    .map(([, c]) => c.okP50Ms)
    .sort((a, b) => a - b);
  return values[values.length >> 1] ?? 0;
};

describe('faults during load: a slow plugin backing up its queue', () => {
  it('process mode: its calls fail with deadline codes, the other plugins all succeed, it answers again after', async () => {
    const baseline = await runSoak({
      mode: 'process',
      seconds: 8,
      callers: 16,
      plugins: 10,
      warmupFraction: 0.3,
    });
    expect(soakProblems({ ...baseline, rssGrowth: 0 })).toEqual([]);

    const result = await runSoak({
      mode: 'process',
      seconds: SECONDS,
      callers: 16,
      plugins: 10,
      warmupFraction: 0.2,
      extraPlugins: [
        {
          id: SLOW,
          source: HELLO,
          manifestExtra: '[limits]\nfuel_per_call = 100000000\ncall_timeout_ms = 1000\n',
          callers: 12,
          fn: 'spin',
          input: '',
          stopAtMs: SLOW_FOR_MS,
        },
      ],
      fault: async (ctx) => {
        // The slow callers stop at SLOW_FOR_MS (and their last calls end): then the plugin must answer again.
        await ctx.sleep(SLOW_FOR_MS);
        ctx.mark('slow callers stopped', [SLOW]);
        while (ctx.remainingMs() > 0 && !(await ctx.call(SLOW, 'echo', 'back', 'back'))) await ctx.sleep(100);
      },
    });
    const slow = result.perPlugin[SLOW];
    // biome-ignore lint/suspicious/noConsole: each fault test prints its recovery time (docs/RELIABILITY.md)
    console.log(
      `faults-slow: load ${result.loadAverage.toFixed(1)}; slow plugin ${JSON.stringify(slow)};`,
      `other plugins' median of successful-call p50: ${medianOfOthers(result.perPlugin).toFixed(1)} ms`,
      `(without the slow plugin: ${medianOfOthers(baseline.perPlugin).toFixed(1)} ms);`,
      `recovered ${result.faults[0]?.recoveryMs[SLOW]} ms after its callers stopped`,
    );
    expect(soakProblems({ ...result, failures: {}, rssGrowth: 0 })).toEqual([]);
    expect(slow).toBeDefined();
    const slowCodes = Object.keys(slow?.failed ?? {});
    expect(slowCodes.length).toBeGreaterThan(0);
    for (const code of slowCodes) expect(SLOW_CODES).toContain(code);
    for (const [id, counts] of Object.entries(result.perPlugin)) {
      if (id === SLOW) continue;
      expect({ id, failed: counts.failed }).toEqual({ id, failed: {} });
      expect(counts.ok).toBeGreaterThan(0);
    }
    expect(result.faults[0]?.recoveryMs[SLOW]).not.toBeNull();
  }, 300_000);
});
