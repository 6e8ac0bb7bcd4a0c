// Traces through @opentelemetry/api (issue 15): spans for a call (and the runner's part of it), a load, an install
// or upgrade. The API is a no-op until the embedder registers an SDK; until then no span is even made (the call
// path reads one global and compares it).
import {
  type Attributes,
  type Context,
  context,
  ProxyTracerProvider,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { CallOutcome } from '../backends/sandbox.js';
import { ReedError } from '../errors.js';
import { formatTraceParent, type TraceParent } from '../trace-context.js';
import { LOADER_VERSION } from '../version.js';

/** The delegate of a ProxyTracerProvider nobody registered a provider into: the API's no-op. */
const NOOP_DELEGATE = new ProxyTracerProvider().getDelegate();

/** Whether an SDK (a tracer provider) is registered. */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_DELEGATE;
}

function tracer(): Tracer {
  return trace.getTracer('reed-plugin-loader', LOADER_VERSION);
}

/** The parent of a span: a caller's traceparent (remote), else the active context. */
function parentOf(parent: TraceParent | undefined): Context {
  if (parent === undefined) return context.active();
  return trace.setSpanContext(context.active(), {
    traceId: parent.traceId,
    spanId: parent.spanId,
    traceFlags: parent.flags & 1,
    isRemote: true,
  });
}

/** The traceparent a span's children carry (the Call frame's `trace`). */
export function traceParentOf(span: Span): string {
  const c = span.spanContext();
  return formatTraceParent({ traceId: c.traceId, spanId: c.spanId, flags: c.traceFlags });
}

function finish(span: Span, error: unknown, endTime?: number): void {
  if (error === undefined) {
    span.setAttribute('reed.outcome', 'ok');
  } else {
    const own = (error as { code?: unknown } | null)?.code;
    const code = error instanceof ReedError || typeof own === 'string' ? String(own) : 'internal_error';
    span.setAttribute('reed.outcome', code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  }
  span.end(endTime);
}

/**
 * A call's span `reed.call` (plugin, tenant, mode, function, outcome) under `parent`; `run` gets the traceparent its
 * sandbox passes on. When a runner reports its part (CallOutcome.runner), that becomes the child span
 * `reed.runner.call`, its times kept within the call's own.
 */
export async function tracedCall(
  attributes: Attributes,
  parent: TraceParent | undefined,
  run: (traceParent: string) => Promise<CallOutcome>,
): Promise<CallOutcome> {
  const t = tracer();
  // Both spans get their times from the one clock the runner's figures are in (timeOrigin + now, milliseconds
  // since the epoch). Left to itself, the SDK dates a span by Date.now() at its start plus the elapsed performance
  // time, a clock that drifts from this one by fractions of a millisecond: a runner span clamped on this clock
  // then ended "after" its call's end on the SDK's (CI saw 0.05 ms).
  const startedAt = performance.timeOrigin + performance.now();
  const span = t.startSpan(
    'reed.call',
    { kind: SpanKind.INTERNAL, attributes, startTime: startedAt },
    parentOf(parent),
  );
  try {
    const outcome = await run(traceParentOf(span));
    const endedAt = performance.timeOrigin + performance.now();
    const runner = outcome.runner;
    if (runner !== undefined) {
      // The runner's clock is the same machine's, but its figures are the runner's word: kept within the call.
      const from = Math.min(Math.max(runner.startedAt, startedAt), endedAt);
      const to = Math.min(Math.max(runner.endedAt, from), endedAt);
      t.startSpan(
        'reed.runner.call',
        { kind: SpanKind.INTERNAL, attributes, startTime: from },
        trace.setSpan(context.active(), span),
      ).end(to);
    }
    finish(span, undefined, endedAt);
    return outcome;
  } catch (error) {
    finish(span, error, performance.timeOrigin + performance.now());
    throw error;
  }
}

/**
 * A lifecycle span (`reed.load`, `reed.install`, `reed.upgrade`) around `work`; `failure` reads an error from a
 * result that is not thrown (a load that left its plugin failed).
 */
export async function traced<T>(
  name: string,
  attributes: Attributes,
  work: () => Promise<T>,
  failure?: (result: T) => unknown,
): Promise<T> {
  if (!tracingEnabled()) return work();
  const span = tracer().startSpan(name, { kind: SpanKind.INTERNAL, attributes });
  try {
    const result = await context.with(trace.setSpan(context.active(), span), work);
    finish(span, failure?.(result));
    return result;
  } catch (error) {
    finish(span, error);
    throw error;
  }
}
