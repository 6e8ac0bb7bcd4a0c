import { performance } from 'node:perf_hooks';

/**
 * The clock of deadlines and call durations: performance.now(), taken from node:perf_hooks once (the global
 * `performance` is an accessor that every use would call).
 */
export const now: () => number = performance.now.bind(performance);

/** A call's place in its sandbox's deadlines: `add` returns it, `remove` takes it back. */
export interface Deadline {
  /** When the call expires, on `now()`'s clock. */
  readonly at: number;
}

interface Entry extends Deadline {
  readonly expire: () => void;
  prev: Entry | undefined;
  next: Entry | undefined;
  /** Whether it is still in the list (removing twice is harmless). */
  listed: boolean;
}

/**
 * Timers measured at most this early: Node's timers count whole milliseconds of the event loop's cached clock, so
 * a timer can fire up to a millisecond before now() says its time has come.
 */
const TIMER_SLACK_MS = 1;

/**
 * The deadlines of one sandbox's calls in flight, on one timer (docs/ARCHITECTURE.md, "Process mode"). A
 * setTimeout per call cost every call of process and container mode a timer list made and dropped (its one
 * timer being the call's), a priority queue insertion and a libuv timer update. Here a call costs linking and
 * unlinking one entry of a list (no hashing, no table to grow and shrink as a Set's does at each call); the one
 * timer is armed for the earliest deadline when a call's is earlier than the armed one, and never disarmed when
 * calls finish: when it fires it expires what is due and re-arms for the earliest deadline left, if any. A call
 * expires at its deadline, give or take the timer's millisecond (TIMER_SLACK_MS), as with a timer of its own.
 */
export class CallDeadlines {
  #head: Entry | undefined;
  #tail: Entry | undefined;
  #size = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires; Infinity when none is armed. */
  #armedAt = Number.POSITIVE_INFINITY;

  /** Registers a call expiring at `at` (on now()'s clock); `expire` runs once then unless removed first. */
  add(at: number, expire: () => void): Deadline {
    const entry: Entry = { at, expire, prev: this.#tail, next: undefined, listed: true };
    if (this.#tail === undefined) this.#head = entry;
    else this.#tail.next = entry;
    this.#tail = entry;
    this.#size++;
    if (at < this.#armedAt) this.#arm(at);
    return entry;
  }

  /** The call settled: it no longer expires. The timer stays as it is (it re-arms or stops when it fires). */
  remove(deadline: Deadline): void {
    const entry = deadline as Entry;
    if (!entry.listed) return;
    entry.listed = false;
    if (entry.prev === undefined) this.#head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) this.#tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = undefined;
    entry.next = undefined;
    this.#size--;
  }

  /** How many calls are waiting on their deadline. */
  get size(): number {
    return this.#size;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    // Unreferenced: a call in flight keeps the host alive by its runner's connection, and a timer left armed
    // after the last call must not hold a host that is done.
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - now())).unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const due: Entry[] = [];
    const limit = now() + TIMER_SLACK_MS;
    let next = Number.POSITIVE_INFINITY;
    for (let entry = this.#head; entry !== undefined; entry = entry.next) {
      if (entry.at <= limit) due.push(entry);
      else if (entry.at < next) next = entry.at;
    }
    for (const entry of due) this.remove(entry);
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // Last: what an expiry does (kill a runner, reject a call) may add or remove deadlines.
    for (const entry of due) entry.expire();
  }
}
