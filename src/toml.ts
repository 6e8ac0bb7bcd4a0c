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
  const plain = parsePlainToml(text);
  if (plain !== undefined) return plain;
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

// --- the plain subset ----------------------------------------------------------------------------------------------
//
// Discovery parses every plugin.toml, and smol-toml took ~19 us for a typical one (the largest single part of
// discovery's time per plugin after the file system's). Most manifests use a small part of TOML: table headers of
// bare keys, `key = value` lines with a bare key, and values that are basic strings without escapes, small decimal
// integers, booleans and one-line arrays of those. parsePlainToml reads exactly that subset and gives up (undefined)
// at the first character outside it, and also on anything TOML refuses or that it cannot judge alone (a key defined
// twice, a table header naming anything that exists, a key `__proto__`); smol-toml then parses the whole document,
// so every other document, every error and every message is smol-toml's. What it returns is what smol-toml returns
// for the same text: tables on a null prototype in document order, arrays of tables as arrays, integers as numbers
// (at most 15 digits, so always safe). test/unit/toml.test.ts holds both to the same results.

/** A table as smol-toml makes it: a null-prototype object. */
type Table = Record<string, unknown>;

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const EQUALS = 0x3d;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/** The most keys a table header of the subset has (`[a.b.c]` has 3). */
const MAX_HEADER_KEYS = 8;

/** A-Z a-z 0-9 _ - : the characters of a bare key. */
function isBareKeyChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x5f ||
    c === MINUS
  );
}

/** What may follow a value: a space, a tab, the end of the line or of the text, a comma or `]` (in an array). */
function endsValue(c: number): boolean {
  return c === SPACE || c === TAB || c === LF || c === CR || c === COMMA || c === CLOSE || Number.isNaN(c);
}

/** A sentinel for "not in the subset" (a value can be anything else, `undefined` included: never from TOML). */
const OUT = Symbol('outside the plain subset');

/** The document as smol-toml would return it, or undefined when it is not all in the plain subset. */
export function parsePlainToml(s: string): Table | undefined {
  const root: Table = Object.create(null);
  const tableArrays = new Set<unknown>(); // arrays made by [[...]] headers (the others are values)
  const n = s.length;
  let p = 0;
  let table = root;

  // A bare key at p, or undefined.
  const bareKey = (): string | undefined => {
    const start = p;
    while (p < n && isBareKeyChar(s.charCodeAt(p))) p++;
    if (p === start) return undefined;
    const key = s.slice(start, p);
    return key === '__proto__' ? undefined : key;
  };
  const skipBlanks = () => {
    for (let c = s.charCodeAt(p); c === SPACE || c === TAB; c = s.charCodeAt(++p));
  };
  // The end of a line (LF, CRLF or the end of the text), after optional blanks; false when anything else is there.
  const endOfLine = (): boolean => {
    skipBlanks();
    if (p >= n) return true;
    const c = s.charCodeAt(p);
    if (c === LF) {
      p++;
      return true;
    }
    if (c === CR && s.charCodeAt(p + 1) === LF) {
      p += 2;
      return true;
    }
    return false;
  };
  // A scalar value at p: a basic string without escapes or control characters, a decimal integer of at most 15
  // digits without a sign other than `-` (and not -0), true or false.
  const scalar = (): unknown => {
    const c = s.charCodeAt(p);
    if (c === QUOTE) {
      if (s.charCodeAt(p + 1) === QUOTE) {
        // "" is the empty string; """ opens a multi-line string (not in the subset).
        if (s.charCodeAt(p + 2) === QUOTE) return OUT;
        p += 2;
        return '';
      }
      const start = ++p;
      for (;;) {
        if (p >= n) return OUT;
        const d = s.charCodeAt(p);
        if (d === QUOTE) break;
        // A backslash (an escape), a control character (tab included) or DEL: not in the subset.
        if (d === 0x5c || d < 0x20 || d === 0x7f) return OUT;
        p++;
      }
      const value = s.slice(start, p);
      p++;
      return endsValue(s.charCodeAt(p)) ? value : OUT;
    }
    if (c === 0x74 /* t */) {
      if (s.startsWith('true', p) && endsValue(s.charCodeAt(p + 4))) {
        p += 4;
        return true;
      }
      return OUT;
    }
    if (c === 0x66 /* f */) {
      if (s.startsWith('false', p) && endsValue(s.charCodeAt(p + 5))) {
        p += 5;
        return false;
      }
      return OUT;
    }
    const negative = c === MINUS;
    const start = negative ? p + 1 : p;
    let q = start;
    while (q < n && s.charCodeAt(q) >= 0x30 && s.charCodeAt(q) <= 0x39) q++;
    const digits = q - start;
    // No digits, a leading zero (or -0), more than 15 digits, or a float, date, `_`, `0x`... after them.
    if (digits === 0 || digits > 15 || !endsValue(s.charCodeAt(q))) return OUT;
    if (s.charCodeAt(start) === 0x30 && (digits > 1 || negative)) return OUT;
    const value = Number(s.slice(p, q));
    p = q;
    return value;
  };
  // A value at p: a scalar, or a one-line array of scalars (`[]` or `[a, b]`, no trailing comma).
  const value = (): unknown => {
    if (s.charCodeAt(p) !== OPEN) return scalar();
    p++;
    const items: unknown[] = [];
    skipBlanks();
    if (s.charCodeAt(p) === CLOSE) {
      p++;
      return items;
    }
    for (;;) {
      const item = scalar();
      if (item === OUT) return OUT;
      items.push(item);
      skipBlanks();
      const c = s.charCodeAt(p);
      if (c === CLOSE) {
        p++;
        return items;
      }
      if (c !== COMMA) return OUT;
      p++;
      skipBlanks();
    }
  };

  while (p < n) {
    skipBlanks();
    if (p >= n) break;
    const c = s.charCodeAt(p);
    if (c === LF || c === CR) {
      if (!endOfLine()) return undefined;
      continue;
    }
    if (c === OPEN) {
      // [a.b.c] or [[a.b.c]], bare keys only, no blanks inside.
      const isArray = s.charCodeAt(p + 1) === OPEN;
      p += isArray ? 2 : 1;
      let t = root;
      let key = bareKey();
      if (key === undefined) return undefined;
      // A header of many keys (a deep table) is left to smol-toml, with its own bounds.
      for (let depth = 1; s.charCodeAt(p) === DOT; depth++) {
        if (depth >= MAX_HEADER_KEYS) return undefined;
        p++;
        // An intermediate key: a table that exists (made by a header, as every table here is), or a new one.
        const next = t[key];
        if (next === undefined) {
          const made: Table = Object.create(null);
          t[key] = made;
          t = made;
        } else if (next !== null && typeof next === 'object' && !Array.isArray(next)) {
          t = next as Table;
        } else return undefined; // a value, or an array (of tables: its last one; left to smol-toml)
        key = bareKey();
        if (key === undefined) return undefined;
      }
      if (s.charCodeAt(p) !== CLOSE) return undefined;
      p++;
      if (isArray) {
        if (s.charCodeAt(p) !== CLOSE) return undefined;
        p++;
      }
      if (!endOfLine()) return undefined;
      const made: Table = Object.create(null);
      const existing = t[key];
      if (isArray) {
        if (existing === undefined) {
          const list = [made];
          tableArrays.add(list);
          t[key] = list;
        } else if (tableArrays.has(existing)) (existing as Table[]).push(made);
        else return undefined;
      } else {
        // A table named twice, or named after a sub-table made it (TOML allows that once): left to smol-toml.
        if (existing !== undefined) return undefined;
        t[key] = made;
      }
      table = made;
      continue;
    }
    // key = value
    const key = bareKey();
    if (key === undefined || table[key] !== undefined) return undefined;
    skipBlanks();
    if (s.charCodeAt(p) !== EQUALS) return undefined;
    p++;
    skipBlanks();
    const v = value();
    if (v === OUT || !endOfLine()) return undefined;
    table[key] = v;
  }
  return root;
}
