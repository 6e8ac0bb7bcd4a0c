import type { CallOutcome } from '../backends/sandbox.js';
import { now } from '../backends/shared/call-deadlines.js';
import type { Code } from '../codes.js';
import { ReedError } from '../errors.js';
import type { CallFinishedEvent } from '../events/events.js';
import { publish } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';

/**
 * One call being watched for `reed:call:finished` (made only when the channel has a subscriber), and that event
 * itself once it settles: one object a call, no other. Its start is the clock read the host makes for every call
 * and hands the sandbox (Sandbox.call's `startedAt`: mode none counts its deadline from it), and a sandbox that
 * read the clock when it had the outcome (mode none) reports that (CallStats.endedAt): then the event costs the
 * call no clock read of its own. Settled through the generation's own reaction (Generation.call), not a promise
 * more. (An object spread on this path had cost ~3 us a call on Node 20 here: none is made.)
 */
export class CallWatch implements CallFinishedEvent {
  code: 'ok' | Code = 'ok';
  durationMs = 0;
  fuelConsumed = 0;
  readonly #startedAt: number;

  constructor(
    readonly session: string,
    readonly tenant: string | undefined,
    readonly pluginId: string,
    readonly mode: SandboxMode | undefined,
    readonly fn: string,
    startedAt: number,
  ) {
    this.#startedAt = startedAt;
  }

  ok(result: CallOutcome): void {
    this.durationMs = (result.stats.endedAt ?? now()) - this.#startedAt;
    this.fuelConsumed = result.stats.fuelConsumed;
    publish('reed:call:finished', this);
  }

  failed(error: unknown): void {
    this.code = error instanceof ReedError ? error.code : 'internal_error';
    this.durationMs = now() - this.#startedAt;
    publish('reed:call:finished', this);
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
