// The one TOML parser of the project (plugin.toml, reed.toml). smol-toml, not @iarna/toml: it implements TOML 1.0
// (iarna stopped at 0.5 and is unmaintained since 2019), it parses our manifests about 2.5x faster (18 vs 50 us for
// a typical plugin.toml: the largest part of discovery's time per plugin), it bounds nesting depth itself, and it
// returns null-prototype tables, so a key named `__proto__` stays data.
import { parse, TomlError } from 'smol-toml';

/** A TOML syntax error, with the 1-based line and column where the parser stopped when it knows them. */
export class TomlSyntaxError extends Error {
  constructor(
    message: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
  }
}

/**
 * Parses a TOML document into plain values. Integers above 2^53 become BigInts (as they must not silently lose
 * digits); everything else is as TOML 1.0 says. Throws TomlSyntaxError, whose message is one line.
 */
export function parseToml(text: string): Record<string, unknown> {
  try {
    return parse(text, { integersAsBigInt: 'asNeeded' }) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      // The message holds a code block of the document after a blank line: the first line is the reason.
      const reason = (error.message.split('\n')[0] ?? 'syntax error').replace(/^Invalid TOML document: /, '');
      throw new TomlSyntaxError(reason, error.line, error.column);
    }
    // A stack overflow on a pathological document, or any other parser failure: still only a syntax error.
    throw new TomlSyntaxError(
      error instanceof Error ? (error.message.split('\n')[0] ?? 'syntax error') : 'syntax error',
    );
  }
}
