import type { Diagnostic } from '../diagnostics.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import type { ValidationContext } from './context.js';

/** One named check over one plugin. Rules do no I/O: discovery gathered what they look at. */
export interface ValidationRule {
  readonly name: string;
  validate(candidate: ParsedCandidate, context: ValidationContext, report: (d: Diagnostic) => void): void;
}
