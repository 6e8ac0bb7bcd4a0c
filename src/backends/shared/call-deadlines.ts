/** A call's place in its sandbox's deadlines: `add` returns it, `remove` takes it back. */
export interface Deadline {
  /** When the call expires, on performance.now()'s clock. */
  readonly at: number;
  readonly expire: () => void;
}

/**
 * Timers measured at most this early: Node's timers count whole milliseconds of the event loop's cached clock, so
 * a timer can fire up to a millisecond before performance.now() says its time has come.
 */
const TIMER_SLACK_MS = 1;

/**
 * The deadlines of one sandbox's calls in flight, on one timer (docs/ARCHITECTURE.md, "Process mode"). A
 * setTimeout per call cost every call of process and container mode a timer list made and dropped (its one
 * timer being the call's), a priority queue insertion and a libuv timer update. Here a call costs a Set
 * insertion and deletion; the one timer is armed for the earliest deadline when a call's is earlier than the
 * armed one, and never disarmed when calls finish: when it fires it expires what is due and re-arms for the
 * earliest deadline left, if any. A call expires at its deadline, give or take the timer's millisecond
 * (TIMER_SLACK_MS), as with a timer of its own.
 */
export class CallDeadlines {
  readonly #calls = new Set<Deadline>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires; Infinity when none is armed. */
  #armedAt = Number.POSITIVE_INFINITY;

  /** Registers a call expiring `timeoutMs` from now; `expire` runs once at that time unless removed first. */
  add(timeoutMs: number, expire: () => void): Deadline {
    const deadline: Deadline = { at: performance.now() + timeoutMs, expire };
    this.#calls.add(deadline);
    if (deadline.at < this.#armedAt) this.#arm(deadline.at);
    return deadline;
  }

  /** The call settled: it no longer expires. The timer stays as it is (it re-arms or stops when it fires). */
  remove(deadline: Deadline): void {
    this.#calls.delete(deadline);
  }

  /** How many calls are waiting on their deadline. */
  get size(): number {
    return this.#calls.size;
  }

  /** Forgets every deadline and the timer (the sandbox stopped). */
  clear(): void {
    this.#calls.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    // Unreferenced: a call in flight keeps the host alive by its runner's connection, and a timer left armed
    // after the last call must not hold a host that is done.
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - performance.now())).unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const now = performance.now() + TIMER_SLACK_MS;
    const due: Deadline[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const deadline of this.#calls) {
      if (deadline.at <= now) due.push(deadline);
      else if (deadline.at < next) next = deadline.at;
    }
    for (const deadline of due) this.#calls.delete(deadline);
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // Last: what an expiry does (kill a runner, reject a call) may add or remove deadlines.
    for (const deadline of due) deadline.expire();
  }
}
