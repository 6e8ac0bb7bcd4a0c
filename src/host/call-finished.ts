import type { CallOutcome } from '../backends/sandbox.js';
import { now } from '../backends/shared/call-deadlines.js';
import { ReedError } from '../errors.js';
import type { CallFinishedEvent, CallRecorder, CallSink } from '../events/events.js';
import { publishCallFinished } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';

/**
 * One call being watched for `reed:call:finished` (made only when the channel has a subscriber, by PluginHost's
 * call, as an object literal there: V8 allocates it inline in the caller's optimized code): the event itself,
 * published once the call settles (callOk, callFailed). Until then its `durationMs` holds the call's start: the
 * clock read the host makes for every call and hands the sandbox (Sandbox.call's `startedAt`: mode none counts its
 * deadline from it). A sandbox that read the clock when it had the outcome (mode none) reports that
 * (CallStats.endedAt): then the event costs the call no clock read of its own. Settled through the generation's own
 * reaction (Generation.call), not a promise more.
 */
export type CallWatch = CallFinishedEvent;

/**
 * The host, for a call given to the sole recorder without an event (Generation.call): it makes the event when the
 * call needs one after all (not settled at once, failed, or the recorder's sink is not to be used), and asks the
 * recorder for this host's sink.
 */
export interface CallEvents {
  callEvent(pluginId: string, mode: SandboxMode | undefined, fn: string, startedAt: number): CallWatch;
  sinkOf(recorder: CallRecorder, pluginId: string, mode: SandboxMode): CallSink | undefined;
}

export function callOk(watch: CallWatch, result: CallOutcome): void {
  watch.durationMs = (result.stats.endedAt ?? now()) - watch.durationMs;
  watch.fuelConsumed = result.stats.fuelConsumed;
  publishCallFinished(watch);
}

export function callFailed(watch: CallWatch, error: unknown): void {
  watch.code = error instanceof ReedError ? error.code : 'internal_error';
  watch.durationMs = now() - watch.durationMs;
  publishCallFinished(watch);
}

/** `outcome`, with `watch` told when it settles: for the calls that do not go straight to a generation. */
export function watchedCall(outcome: Promise<CallOutcome>, watch: CallWatch): Promise<CallOutcome> {
  return outcome.then(
    (result) => {
      callOk(watch, result);
      return result;
    },
    (error: unknown) => {
      callFailed(watch, error);
      throw error;
    },
  );
}
