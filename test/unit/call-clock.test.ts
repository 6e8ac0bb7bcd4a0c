// The call path's clock (src/host/call-finished.ts): with a reed:call:finished subscriber, the host reads the clock
// once for a mode-none call and the sandbox shares it (Sandbox.call's startedAt, CallStats.endedAt), so the event's
// duration is the sandbox's own; a sandbox given a start counts its deadline from it.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { InProcessSandbox } from '../../src/backends/in-process/in-process-sandbox.js';
import { now } from '../../src/backends/shared/call-deadlines.js';
import { type CallFinishedEvent, subscribeEvent } from '../../src/events/events.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';

const EXAMPLES = join(REPO, 'examples/plugins');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('one clock for a mode-none call and its event', () => {
  it("the event's duration is the outcome's, measured from the host's start to the guest's return", async () => {
    const { host } = await startHost([EXAMPLES], { mode: 'none', plugins: ['example.hello'] });
    cleanups.push(() => host.close());
    const seen: CallFinishedEvent[] = [];
    cleanups.push(subscribeEvent('reed:call:finished', (e) => seen.push(e)));
    for (let i = 0; i < 5; i++) {
      const before = now();
      const outcome = await host.call('example.hello', 'echo', 'x'.repeat(64));
      const after = now();
      const event = seen.at(-1) as CallFinishedEvent;
      expect(event.code).toBe('ok');
      expect(event.durationMs).toBe(outcome.stats.durationMs);
      expect(outcome.stats.endedAt).toBeGreaterThanOrEqual(before);
      expect(outcome.stats.endedAt).toBeLessThanOrEqual(after);
    }
    expect(seen).toHaveLength(5);
    // A failure is timed by the host's own clock, and published once.
    await expect(host.call('example.hello', 'nothing')).rejects.toMatchObject({ code: 'function_not_found' });
    expect(seen).toHaveLength(6);
    expect(seen.at(-1)).toMatchObject({
      code: 'function_not_found',
      pluginId: 'example.hello',
      mode: 'none',
    });
  });

  it("a mode-none sandbox counts the deadline from the caller's start", async () => {
    const { host } = await startHost([EXAMPLES], { mode: 'none', plugins: ['example.hello'] });
    cleanups.push(() => host.close());
    const sandbox = host.sandbox('example.hello') as InProcessSandbox;
    // Begun a minute ago with a second to run: past its deadline when the guest returns.
    await expect(
      sandbox.call('echo', new Uint8Array(8), { timeoutMs: 1000 }, now() - 60_000),
    ).rejects.toMatchObject({ code: 'call_timeout' });
    const outcome = await sandbox.call('echo', new Uint8Array(8), { timeoutMs: 1000 }, now());
    expect(outcome.output).toHaveLength(8);
  });
});
