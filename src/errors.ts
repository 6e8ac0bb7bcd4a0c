import type { Code } from './codes.js';

/** Where an error or diagnostic points: the plugin, the file and the field inside it. */
export interface ErrorLocation {
  pluginId?: string;
  file?: string;
  /** Dotted key path inside the file, e.g. `metadata.version` or `requirements.dependencies[1].id`. */
  field?: string;
}

export interface ReedErrorOptions extends ErrorLocation {
  cause?: unknown;
  /** Structured facts about the failure (e.g. a plugin's own error code, an exit status). */
  details?: Record<string, unknown>;
}

/**
 * The one error type of this package. `code` is stable (see docs/CODES.md): match on it, never on the message.
 * Messages name the plugin, file and field, and say how to fix the problem.
 */
export class ReedError extends Error {
  override readonly name = 'ReedError';
  readonly code: Code;
  readonly pluginId: string | undefined;
  readonly file: string | undefined;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: Code, message: string, options: ReedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.pluginId = options.pluginId;
    this.file = options.file;
    this.field = options.field;
    this.details = options.details;
  }

  toJSON(): { code: Code; message: string; details?: Record<string, unknown> } & ErrorLocation {
    return {
      code: this.code,
      message: this.message,
      ...(this.pluginId === undefined ? {} : { pluginId: this.pluginId }),
      ...(this.file === undefined ? {} : { file: this.file }),
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

export function isReedError(value: unknown, code?: Code): value is ReedError {
  return value instanceof ReedError && (code === undefined || value.code === code);
}
