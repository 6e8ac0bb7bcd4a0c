/**
 * `idle_timeout` (reed.toml's and plugin.toml's `[sandbox]`): how long a plugin may go without a call before its
 * sandbox is stopped (scale to zero; docs/MANIFEST.md). A duration as a string: a whole number with its unit,
 * `ms`, `s`, `m` or `h` (`"200ms"`, `"30s"`, `"5m"`, `"1h"`), or `"off"`.
 */
export const IDLE_TIMEOUT_MIN_MS = 100;
/** 30 days: a timer of Node's holds at most 2^31 - 1 ms (about 24.8 days); IdleClock re-arms past that. */
export const IDLE_TIMEOUT_MAX_MS = 30 * 24 * 3_600_000;

const FORM = /^([0-9]{1,10})(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds (0 for `"off"`), or why the text is not a valid idle_timeout. */
export function parseIdleTimeout(text: string): { ms: number } | { problem: string } {
  if (text === 'off') return { ms: 0 };
  const match = FORM.exec(text);
  if (match === null)
    return {
      problem: `must be a duration such as "200ms", "30s", "5m" or "1h" (a whole number and ms, s, m or h), or "off"; found ${JSON.stringify(text.slice(0, 40))}`,
    };
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  if (ms < IDLE_TIMEOUT_MIN_MS || ms > IDLE_TIMEOUT_MAX_MS)
    return { problem: `is "${text}": it must be between ${IDLE_TIMEOUT_MIN_MS} ms and 30 days, or "off"` };
  return { ms };
}
