import pino, { type Logger } from 'pino';
import { escapeRawInJson } from '../safe-text.js';

/**
 * JSON lines on stderr. pino escapes C0 controls in strings but leaves C1 controls, U+2028/U+2029 and bidi
 * controls raw; on a terminal those repaint it or reorder a line, so they are escaped on the way out too
 * (src/safe-text.ts): the line stays the same JSON.
 */
export function defaultLogger(): Logger {
  // Synchronous: a plain stream has no flush on exit, and a line written is a line out (the CLI exits at once).
  const out = pino.destination({ dest: 2, sync: true });
  const stream = { write: (line: string) => out.write(escapeRawInJson(line)) };
  return pino({ name: 'reed-plugins', level: process.env.REED_LOG_LEVEL ?? 'info' }, stream);
}
