import { describe, expect, it } from 'vitest';
import { runSoak, type SoakMode, soakProblems } from '../../bench/soak.js';

/**
 * Issue 17, part 1: the short version of `npm run soak` (bench/soak.ts) in every mode: concurrent API callers over
 * ten plugins through `reed-plugins serve` for seconds rather than minutes. Every request is answered with a 200
 * and the right body, and nothing the server made is left after its stop. RSS growth is judged by the full soak
 * only (seconds of load say nothing about a leak; its figure is in docs/RELIABILITY.md).
 */
const cases: [SoakMode, number, number][] = [
  ['none', 10, 10],
  ['process', 10, 10],
  ['container', 15, 4],
];

describe('soak, short', () => {
  it.each(cases)(
    'mode %s: every request answered, nothing left after the stop',
    async (mode, seconds, plugins) => {
      const result = await runSoak({ mode, seconds, callers: 16, plugins, warmupFraction: 0.3 });
      const problems = soakProblems({ ...result, rssGrowth: 0 });
      expect(problems).toEqual([]);
      expect(result.requests).toBeGreaterThan(seconds); // at least one a second went through
      if (mode !== 'none') expect(result.sandboxesMax).toBeGreaterThanOrEqual(plugins);
    },
    300_000,
  );
});
