// A traced call's runner span lies within the call's span whatever the wall clock does. The SDK would date a span
// by Date.now() at its start; the runner reports times on the performance clock (timeOrigin + now). The two drift
// apart (NTP slews the wall clock, and CI saw 0.05 ms): here the wall clock is put 5 ms ahead and 5 ms behind, and
// the runner claims times outside the call, both ways.
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CallOutcome } from '../../src/backends/sandbox.js';
import { tracedCall } from '../../src/host/tracing.js';

const exporter = new InMemorySpanExporter();
beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => {
  trace.disable();
  context.disable();
});
afterEach(() => {
  vi.restoreAllMocks();
  exporter.reset();
});

const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
const perfNow = () => performance.timeOrigin + performance.now();

describe('tracedCall', () => {
  for (const skew of [5, -5]) {
    for (const claim of ['inside', 'before and after'] as const) {
      it(`wall clock ${skew > 0 ? 'ahead' : 'behind'} by ${Math.abs(skew)} ms, runner times ${claim} the call: the runner span lies within the call span`, async () => {
        const realNow = Date.now.bind(Date);
        vi.spyOn(Date, 'now').mockImplementation(() => realNow() + skew);
        await tracedCall({ 'reed.plugin': 'p' }, undefined, async () => {
          const startedAt = perfNow();
          await new Promise((resolve) => setTimeout(resolve, 2));
          const endedAt = perfNow();
          const runner =
            claim === 'inside'
              ? { startedAt, endedAt }
              : { startedAt: startedAt - 50, endedAt: endedAt + 50 };
          return { output: new Uint8Array(), stats: {} as CallOutcome['stats'], runner };
        });
        const spans = exporter.getFinishedSpans();
        const call = spans.find((s) => s.name === 'reed.call') as ReadableSpan;
        const runner = spans.find((s) => s.name === 'reed.runner.call') as ReadableSpan;
        expect(runner.parentSpanContext?.spanId).toBe(call.spanContext().spanId);
        expect(ms(runner.startTime)).toBeGreaterThanOrEqual(ms(call.startTime));
        expect(ms(runner.endTime)).toBeLessThanOrEqual(ms(call.endTime));
        expect(ms(runner.endTime)).toBeGreaterThanOrEqual(ms(runner.startTime));
        if (claim === 'inside') expect(ms(runner.endTime) - ms(runner.startTime)).toBeGreaterThan(1);
      });
    }
  }
});
