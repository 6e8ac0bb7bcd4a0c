import type { CallOutcome } from '../backends/sandbox.js';
import { now } from '../backends/shared/call-deadlines.js';
import { ReedError } from '../errors.js';
import { publish } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';

/**
 * One call being watched for `reed:call:finished` (made only when the channel has a subscriber): its source and when
 * it began, on now()'s clock. The host hands `startedAt` to the sandbox (CallOptions.startedAt), which counts its
 * deadline from it, and a sandbox that read the clock when it had the outcome (mode none) reports that
 * (CallStats.endedAt): then the event costs the call no clock read of its own. Settled through the generation's
 * own reaction (Generation.call), not a promise more; the event is an object literal (a spread of an object cost
 * ~3 us a call on Node 20 here, a literal ~0.02).
 */
export class CallWatch {
  readonly startedAt = now();

  constructor(
    readonly session: string,
    readonly tenant: string | undefined,
    readonly pluginId: string,
    readonly mode: SandboxMode | undefined,
    readonly fn: string,
  ) {}

  ok(result: CallOutcome): void {
    publish('reed:call:finished', {
      session: this.session,
      tenant: this.tenant,
      pluginId: this.pluginId,
      mode: this.mode,
      fn: this.fn,
      code: 'ok',
      durationMs: (result.stats.endedAt ?? now()) - this.startedAt,
      fuelConsumed: result.stats.fuelConsumed,
    });
  }

  failed(error: unknown): void {
    publish('reed:call:finished', {
      session: this.session,
      tenant: this.tenant,
      pluginId: this.pluginId,
      mode: this.mode,
      fn: this.fn,
      code: error instanceof ReedError ? error.code : 'internal_error',
      durationMs: now() - this.startedAt,
      fuelConsumed: 0,
    });
  }
}

/** `outcome`, with `watch` told when it settles: for the calls that do not go straight to a generation. */
export function watchedCall(outcome: Promise<CallOutcome>, watch: CallWatch): Promise<CallOutcome> {
  return outcome.then(
    (result) => {
      watch.ok(result);
      return result;
    },
    (error: unknown) => {
      watch.failed(error);
      throw error;
    },
  );
}
