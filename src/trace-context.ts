import { ReedError } from './errors.js';

/** A W3C Trace Context `traceparent` (version 00): what an API request, CallOptions and the Call frame carry. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export interface TraceParent {
  traceId: string;
  spanId: string;
  /** Bit 0: sampled. */
  flags: number;
}

/**
 * `value` as a traceparent, or undefined when absent; anything else (not a string, longer than 55 characters, not
 * version 00 lowercase hex, an all-zero id) is `trace_context_invalid`. The host checks what a caller gives; the
 * runner checks its Call frame's field again.
 */
export function checkTraceParent(value: unknown, pluginId?: string): TraceParent | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === 'string' && value.length === 55 ? TRACEPARENT.exec(value) : null;
  if (match === null || match[1] === ZERO_TRACE || match[2] === ZERO_SPAN)
    throw new ReedError(
      'trace_context_invalid',
      `the call's trace context must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>), not ${typeof value === 'string' ? JSON.stringify(value.slice(0, 64)) : typeof value}`,
      pluginId === undefined ? {} : { pluginId },
    );
  return {
    traceId: match[1] as string,
    spanId: match[2] as string,
    flags: Number.parseInt(match[3] as string, 16),
  };
}

export function formatTraceParent(p: TraceParent): string {
  return `00-${p.traceId}-${p.spanId}-${(p.flags & 0xff).toString(16).padStart(2, '0')}`;
}
