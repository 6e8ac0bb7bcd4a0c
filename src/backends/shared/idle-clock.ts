import { now } from './call-deadlines.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Scale-to-zero's clock (`idle_timeout`, docs/ARCHITECTURE.md, "Scale to zero"): tells its sandbox once no call has
 * been in flight for `timeoutMs`. One unref'd timer per sandbox (it never keeps the process alive), armed when the
 * sandbox becomes ready and never touched by a call: a call only records when it ended (`touch`), and the timer,
 * when it fires early (a call was in flight, or ended since), arms itself again for the time left.
 */
export class IdleClock {
  #timer: NodeJS.Timeout | undefined;
  /** When the last call ended (or the sandbox became ready), on now()'s clock. */
  #quietSince = 0;

  constructor(
    readonly timeoutMs: number,
    /** Whether a call is in flight now. */
    private readonly busy: () => boolean,
    /** Called once the sandbox has been quiet for `timeoutMs`; the clock is disarmed until `arm` again. */
    private readonly onIdle: () => void,
  ) {}

  /** Starts counting from now (the sandbox became ready). */
  arm(): void {
    this.#quietSince = now();
    this.#schedule(this.timeoutMs);
  }

  /** A call ended: the quiet starts again from now. */
  touch(): void {
    this.#quietSince = now();
  }

  /** Stops counting (the sandbox closes). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    // Node's timers hold at most 2^31 - 1 ms (a longer one fires at once): #check arms again for the time left.
    const delay = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms)));
    this.#timer = setTimeout(() => this.#check(), delay).unref();
  }

  #check(): void {
    this.#timer = undefined;
    if (this.busy()) {
      this.#schedule(this.timeoutMs);
      return;
    }
    const quietMs = now() - this.#quietSince;
    if (quietMs < this.timeoutMs) {
      this.#schedule(this.timeoutMs - quietMs);
      return;
    }
    this.onIdle();
  }
}
