import type { CallOutcome } from '../backends/sandbox.js';
import { ReedError } from '../errors.js';
import { publish } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';

/** Publishes `reed:call:finished` when the call settles; the caller gets the same outcome. */
export async function publishedCall(
  outcome: Promise<CallOutcome>,
  event: { session: string; tenant?: string; pluginId: string; mode: SandboxMode | undefined; fn: string },
  started: number,
): Promise<CallOutcome> {
  try {
    const result = await outcome;
    const durationMs = performance.now() - started;
    publish('reed:call:finished', {
      ...event,
      code: 'ok',
      durationMs,
      fuelConsumed: result.stats.fuelConsumed,
    });
    return result;
  } catch (error) {
    const code = error instanceof ReedError ? error.code : 'internal_error';
    publish('reed:call:finished', {
      ...event,
      code,
      durationMs: performance.now() - started,
      fuelConsumed: 0,
    });
    throw error;
  }
}
