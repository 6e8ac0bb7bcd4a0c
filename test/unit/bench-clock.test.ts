import { describe, expect, it } from 'vitest';
import { Clock } from '../../bench/tenants.js';

// The tenants bench's pacing (bench/tenants.ts, Pacing): a worker thread wakes the main thread at each due time.
describe('the tenants bench clock', () => {
  it('signals each due time of a phase once, in order, never before it, and counts its lateness', async () => {
    const clock = new Clock();
    try {
      await clock.ready;
      expect(clock.sched).not.toBe('not set');
      for (const count of [20, 7]) {
        const t0 = performance.now() + 1;
        clock.start(t0, count);
        const seen: number[] = [];
        for (let k = 0; k < count; k++) {
          await clock.due(k);
          // The two threads read one clock (the monotonic clock); 10 us for the offset between its two readings (hrtimeOffset).
          expect(performance.now()).toBeGreaterThanOrEqual(t0 + k - 0.01);
          seen.push(k);
        }
        expect(seen).toEqual([...Array(count).keys()]);
        expect(clock.late).toHaveLength(count);
        for (const late of clock.late) expect(late).toBeGreaterThanOrEqual(0);
        // Once it came, a due time is settled at once.
        expect(clock.due(count - 1)).toBeUndefined();
      }
    } finally {
      await clock.close();
    }
  });
});
