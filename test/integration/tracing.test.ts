// Traces (issue 15): with a test SDK registered (@opentelemetry/sdk-trace-base, an in-memory exporter), a call
// under a caller's traceparent makes the host's span `reed.call` under that trace and the
// runner's part as its child `reed.runner.call` (the Call frame carries the trace context), in process and container
// modes. Process and container modes run the runner from dist/ (npm run build); container mode needs the Docker
// engine.
import { join } from 'node:path';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tracingEnabled } from '../../src/host/tracing.js';
import { createApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { api } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const EXAMPLES = join(REPO, 'examples/plugins');
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_SPAN}-01`;

const exporter = new InMemorySpanExporter();
const cleanups: (() => unknown)[] = [];

beforeAll(() => {
  expect(tracingEnabled()).toBe(false);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => {
  trace.disable();
  context.disable();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  exporter.reset();
});

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const named = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);

describe('traces with a test SDK registered', () => {
  it('process mode: one API call with a traceparent makes the host span under the caller\u2019s trace and the runner span under it', async () => {
    expect(tracingEnabled()).toBe(true);
    const { host } = await startHost([EXAMPLES], {
      mode: 'process',
      plugins: ['example.hello'],
      reedToml: '[signatures]\nrequire = "none"\n',
    });
    cleanups.push(() => host.close());
    const load = named('reed.load');
    expect(load).toHaveLength(1);
    expect(load[0]?.attributes).toMatchObject({ 'reed.plugin': 'example.hello', 'reed.outcome': 'ok' });
    exporter.reset();

    // Through the API: the traceparent header.
    const server = createApiServer(host, { maxInputBytes: 1024 });
    const socket = join(tempDir('reed-trace-api-'), 'api.sock');
    await listenOnSocket(server, socket);
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const answer = await api(socket, 'POST', '/v1/plugins/example.hello/call/greet', 'you', {
      traceparent: TRACEPARENT,
    });
    expect(answer.status).toBe(200);
    expect(answer.body.output).toContain('you');
    const [call] = named('reed.call');
    const [runner] = named('reed.runner.call');
    expect(call).toBeDefined();
    expect(runner).toBeDefined();
    expect(call?.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(call as ReadableSpan)).toBe(PARENT_SPAN);
    expect(call?.attributes).toMatchObject({
      'reed.plugin': 'example.hello',
      'reed.tenant': 'default',
      'reed.mode': 'process',
      'reed.function': 'greet',
      'reed.outcome': 'ok',
    });
    expect(runner?.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(runner as ReadableSpan)).toBe(call?.spanContext().spanId);
    // Without a caller's context, a call starts its own trace; an error is the span's outcome and status.
    exporter.reset();
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    const [failed] = named('reed.call');
    expect(failed?.attributes['reed.outcome']).toBe('function_not_found');
    expect(failed?.status.code).toBe(2);
    expect(failed?.spanContext().traceId).not.toBe(TRACE_ID);
  });

  it('container mode: one API call with a traceparent makes the host span under the caller\u2019s trace and the runner span under it', async () => {
    const { host } = await startHost([EXAMPLES], {
      mode: 'container',
      plugins: ['example.hello'],
      reedToml: '[signatures]\nrequire = "none"\n',
    });
    cleanups.push(() => host.close());
    exporter.reset();
    const server = createApiServer(host, { maxInputBytes: 1024 });
    const socket = join(tempDir('reed-trace-api-'), 'api.sock');
    await listenOnSocket(server, socket);
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const answer = await api(socket, 'POST', '/v1/plugins/example.hello/call/greet', 'box', {
      traceparent: TRACEPARENT,
    });
    expect(answer.status).toBe(200);
    expect(answer.body.output).toContain('box');
    const calls = named('reed.call');
    const runners = named('reed.runner.call');
    expect(calls).toHaveLength(1);
    expect(runners).toHaveLength(1);
    const [call] = calls;
    const [runner] = runners;
    expect(call?.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(call as ReadableSpan)).toBe(PARENT_SPAN);
    expect(call?.attributes).toMatchObject({
      'reed.plugin': 'example.hello',
      'reed.tenant': 'default',
      'reed.mode': 'container',
      'reed.function': 'greet',
      'reed.outcome': 'ok',
    });
    expect(runner?.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(runner as ReadableSpan)).toBe(call?.spanContext().spanId);
    expect(runner?.attributes['reed.mode']).toBe('container');
    // The runner's part lies within the call's own.
    const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
    expect(ms((runner as ReadableSpan).startTime)).toBeGreaterThanOrEqual(
      ms((call as ReadableSpan).startTime),
    );
    expect(ms((runner as ReadableSpan).endTime)).toBeLessThanOrEqual(ms((call as ReadableSpan).endTime));
  }, 180_000);

  it('mode none: the call span continues the caller\u2019s trace; a malformed traceparent fails the call', async () => {
    const { host } = await startHost([EXAMPLES], { mode: 'none', plugins: ['example.hello'] });
    cleanups.push(() => host.close());
    exporter.reset();
    await host.call('example.hello', 'greet', 'x', { traceParent: TRACEPARENT });
    const [call] = named('reed.call');
    expect(call?.spanContext().traceId).toBe(TRACE_ID);
    expect(call?.attributes['reed.mode']).toBe('none');
    expect(named('reed.runner.call')).toHaveLength(0);
    for (const bad of [
      '00-xyz',
      `01-${TRACE_ID}-${PARENT_SPAN}-01`,
      `00-${'0'.repeat(32)}-${PARENT_SPAN}-01`,
    ])
      await expect(host.call('example.hello', 'greet', 'x', { traceParent: bad })).rejects.toMatchObject({
        code: 'trace_context_invalid',
      });
  });
});
