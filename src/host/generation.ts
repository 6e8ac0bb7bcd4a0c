import type { LoadPlan } from '../backends/backend.js';
import type { CallOptions, CallOutcome, Sandbox } from '../backends/sandbox.js';
import { now as clock } from '../backends/shared/call-deadlines.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import {
  type CallRecorder,
  type CallSink,
  callSubscribersVersion,
  soleCallRecorder,
} from '../events/events.js';
import { type CallEvents, type CallWatch, callFailed, callOk } from './call-finished.js';

/**
 * One started version of a plugin: its candidate, its plan (kept so that a rollback can start it again without
 * reading files that an edit or an upgrade may have changed since) and its sandbox, with the calls it has in
 * flight counted so that an upgrade can let them finish (drain) before it stops the sandbox.
 */
export class Generation {
  #inFlight = 0;
  #idle: (() => void)[] = [];
  /**
   * The sole call recorder's sink for this generation's calls (a metrics registry's series), and the subscribers'
   * version it was taken at: good while that version holds. Dropped with the generation (upgrade, removal).
   */
  #sink: CallSink | undefined = undefined;
  #sinkVersion = -1;

  constructor(
    readonly candidate: ParsedCandidate,
    readonly plan: LoadPlan,
    readonly sandbox: Sandbox,
  ) {}

  get version(): string {
    return this.candidate.manifest.metadata.version;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * A call through this generation, counted until it settles (every call's path: one counter, one callback), and
   * `watch` told its outcome in the same callback (no promise more for the call event). `startedAt`: Sandbox.call's.
   * The caller gets the sandbox's own promise: the count's reaction is registered on it first, so it runs (and the
   * event is published) before the caller's. Returning a promise chained from it instead cost every call a promise
   * more resolved with the outcome (V8 then looks up the outcome's `then`), a reaction job and two closures:
   * ~400 host instructions of a process-mode call (callgrind).
   */
  call(
    fn: string,
    input: Uint8Array,
    options?: CallOptions,
    startedAt?: number,
    watch?: CallWatch,
    events?: CallEvents,
  ): Promise<CallOutcome> {
    // A call the sandbox answers at once (mode none, not idle) is never in flight: no drain can begin in between,
    // so it is not counted, and nothing waits for a reaction (~400 instructions a call less, callgrind).
    const sandbox = this.sandbox;
    if (sandbox.callNow !== undefined) {
      let now: CallOutcome | undefined;
      try {
        now = sandbox.callNow(fn, input, options, startedAt);
      } catch (error) {
        if (watch === undefined && events !== undefined && startedAt !== undefined)
          watch = events.callEvent(this.candidate.id, this.plan.mode, fn, startedAt);
        if (watch !== undefined) callFailed(watch, error);
        return Promise.reject(error);
      }
      if (now !== undefined) {
        // Made before the event's subscribers run: V8 then still knows the outcome has no 'then' (after them it
        // looked it up: ~270 instructions a call).
        const settled = Promise.resolve(now);
        if (watch !== undefined) callOk(watch, now);
        else if (events !== undefined && startedAt !== undefined) this.#record(events, fn, startedAt, now);
        return settled;
      }
    }
    // Not settled at once: the event after all, for whoever listens when the call settles.
    if (watch === undefined && events !== undefined && startedAt !== undefined)
      watch = events.callEvent(this.candidate.id, this.plan.mode, fn, startedAt);
    this.#inFlight++;
    let outcome: Promise<CallOutcome>;
    try {
      outcome = this.sandbox.call(fn, input, options, startedAt);
    } catch (error) {
      this.#settled();
      if (watch !== undefined) callFailed(watch, error);
      return Promise.reject(error);
    }
    // then, not finally: finally's extra promise and reaction jobs cost every call ~1,300 instructions more. Its
    // own promise settles without a value whatever the outcome: never an unhandled rejection of its own.
    if (watch === undefined) outcome.then(this.#ended, this.#ended);
    else this.#watch(outcome, watch);
    return outcome;
  }

  /**
   * A watched call's reaction. Its closures are made here, not in call: there they made every call, watched or
   * not, allocate the context they share (48 bytes, ~20 instructions; callgrind).
   */
  #watch(outcome: Promise<CallOutcome>, watch: CallWatch): void {
    outcome.then(
      (result) => {
        this.#settled();
        callOk(watch, result);
      },
      (error: unknown) => {
        this.#settled();
        callFailed(watch, error);
      },
    );
  }

  /**
   * A call settled at once, given to the sole recorder's sink without an event (what the sink records is its own
   * `add`, the same as from the event). When the recorder has changed, or another subscriber came, or the recorder
   * does not count this host, the event is built and published as for any call.
   */
  #record(events: CallEvents, fn: string, startedAt: number, result: CallOutcome): void {
    let sink = this.#sink;
    if (this.#sinkVersion !== callSubscribersVersion() || sink === undefined) {
      sink = undefined;
      const recorder: CallRecorder | undefined = soleCallRecorder();
      if (recorder !== undefined) sink = events.sinkOf(recorder, this.candidate.id, this.plan.mode);
      this.#sink = sink;
      this.#sinkVersion = callSubscribersVersion();
    }
    if (sink === undefined || soleCallRecorder() === undefined)
      callOk(events.callEvent(this.candidate.id, this.plan.mode, fn, startedAt), result);
    else sink.add('ok', (result.stats.endedAt ?? clock()) - startedAt, result.stats.fuelConsumed);
  }

  /** #settled as a function made once, for the calls nobody watches. */
  readonly #ended = (): void => this.#settled();

  #settled(): void {
    // Most calls end with nobody waiting for the drain: no splice (a new array and an iterator) for them.
    if (--this.#inFlight > 0 || this.#idle.length === 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  /**
   * Resolves when no call is in flight any more (true), or after `timeoutMs` (false: calls still in flight; the
   * caller stops the sandbox all the same, and they fail). New calls must no longer reach this generation.
   */
  drained(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#idle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
