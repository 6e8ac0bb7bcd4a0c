/**
 * Milliseconds on a monotonic clock of the process's own (only differences of it are used). Not performance.now():
 * a runner's first log line (an init's) would load node:perf_hooks for it (~1 ms of a runner's start).
 */
function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

/**
 * The log rate cap (limits.log_lines_per_second) as a token bucket refilled each second. One class for both
 * places that apply it: the host (PluginHostApi, authoritative, whatever sends the lines) and the WASM runtime,
 * which drops lines over the rate before they leave it, so a flood never becomes a flood of messages and frames
 * from a runner (issue 10, class 7).
 */
export class LogRate {
  #tokens: number;
  #refilledAt: number;
  #dropped = 0;

  constructor(readonly perSecond: number) {
    this.#tokens = perSecond;
    this.#refilledAt = monotonicMs();
  }

  /**
   * Whether one more line may go now (a refused one is counted). `onDropped` hears, once per second at most,
   * how many lines the last window dropped.
   */
  admit(onDropped: (dropped: number) => void): boolean {
    const now = monotonicMs();
    if (now - this.#refilledAt >= 1_000) {
      if (this.#dropped > 0) onDropped(this.#dropped);
      this.#dropped = 0;
      this.#tokens = this.perSecond;
      this.#refilledAt = now;
    }
    if (this.#tokens <= 0) {
      this.#dropped++;
      return false;
    }
    this.#tokens--;
    return true;
  }
}
