import type { Code } from './codes.js';
import type { ErrorLocation } from './errors.js';
import { escapeUnprintable } from './safe-text.js';

export type Severity = 'error' | 'warning';

/** One finding about a plugin: what is wrong (code), how bad (severity), and where. */
export interface Diagnostic extends ErrorLocation {
  code: Code;
  severity: Severity;
  message: string;
  line?: number;
  column?: number;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** `file:line:col: severity code: message (field)` — the one-line form the CLI prints. */
export function formatDiagnostic(d: Diagnostic): string {
  const where =
    d.file === undefined ? '' : `${d.file}${d.line === undefined ? '' : `:${d.line}:${d.column ?? 1}`}: `;
  const field = d.field === undefined ? '' : ` [${d.field}]`;
  // One line on a terminal whatever a manifest put in the values a message quotes (src/safe-text.ts).
  return escapeUnprintable(`${where}${d.severity} ${d.code}: ${d.message}${field}`);
}
