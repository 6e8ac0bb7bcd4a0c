// Text and JSON from plugins and runners, made safe to show: one place for what may reach a terminal, a log line
// or a JSON answer (adversarial pass, finding 3, and its sweep). Every string a plugin chose is hostile: control
// characters repaint a terminal (ESC and C1 sequences), move the cursor (\r, \b) or start a line that passes for
// the host's or another plugin's (\n, U+2028/U+2029 in some viewers); bidi controls reorder what is shown.
// JSON.stringify escapes C0 but leaves DEL, C1, the separators and bidi controls raw; pino does the same.
import { stringifyJson } from './json.js';

/** Characters never shown raw: C0 but tab, DEL, C1, U+2028/U+2029, and the bidi embeddings/overrides/isolates. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is escaped
const UNPRINTABLE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** Of those, the ones JSON.stringify leaves raw inside a string (it escapes C0 itself). */
const RAW_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const asEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** `text` with every unprintable character written as `\uXXXX`: one line, nothing a terminal acts on. */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, asEscape);
}

/**
 * A JSON text (a log line, an answer) with the characters JSON leaves raw escaped as `\uXXXX`: still the same JSON
 * (they can only occur inside strings, where the escape means the same character), but safe on a terminal.
 */
export function escapeRawInJson(json: string): string {
  return json.replace(RAW_IN_JSON, asEscape);
}

/**
 * `value` as terminal-safe JSON (BigInts as decimal strings), or undefined when it cannot be serialized: nested
 * deeper than the stack, circular, or too large for a string. Never throws, so an error path can always answer.
 */
export function jsonText(value: unknown, space?: number): string | undefined {
  try {
    return escapeRawInJson(stringifyJson(value, space));
  } catch {
    return undefined;
  }
}
