import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { generate } from '../../bench/discovery.js';
import { parsePlainToml, parseToml } from '../../src/toml.js';
import { tempDir } from '../helpers/plugin-tree.js';

// parsePlainToml reads a subset of TOML and must give exactly what smol-toml gives for every document it accepts
// (same values, same null-prototype tables, same key order), and give up on everything else.

const smol = (text: string) => parse(text, { integersAsBigInt: 'asNeeded' });

/** Whether two parsed values are the same: values by Object.is, prototypes, keys and their order. */
function same(a: unknown, b: unknown): boolean {
  if (a === null || typeof a !== 'object' || b === null || typeof b !== 'object') return Object.is(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const ka = Reflect.ownKeys(a);
  const kb = Reflect.ownKeys(b);
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) =>
    same((a as Record<PropertyKey, unknown>)[k], (b as Record<PropertyKey, unknown>)[k]),
  );
}

// Mostly plain pieces, so that whole documents often fall in the subset (duplicates and redefinitions included).
const plainOrNot = <T>(plain: fc.Arbitrary<T>, other: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 6, arbitrary: plain }, { weight: 1, arbitrary: other });
const key = plainOrNot(
  fc.constantFrom('a', 'b', 'c'),
  fc.constantFrom('x-y', '1', 'constructor', '__proto__', '"q"', 'a.b', 'a b', ''),
);
const header = fc
  .tuple(
    fc.array(key, { minLength: 1, maxLength: 3 }),
    fc.boolean(),
    plainOrNot(fc.constant(''), fc.constantFrom(' ', ' #c', '\t')),
  )
  .map(([keys, array, tail]) => (array ? `[[${keys.join('.')}]]` : `[${keys.join('.')}]`) + tail);
const chars = fc.constantFrom(
  'a',
  'é',
  '😀',
  '\\',
  '"',
  "'",
  '\t',
  '\u0001',
  '\u007f',
  '\uFFFD',
  ' ',
  '#',
  '=',
);
const scalar = fc.oneof(
  fc.array(chars, { maxLength: 4 }).map((cs) => `"${cs.join('')}"`),
  fc.integer().map(String),
  fc.constantFrom(
    '""',
    '"""x"""',
    "'lit'",
    '-0',
    '0',
    '00',
    '+1',
    '1_000',
    '0x10',
    '1e3',
    '1.5',
    '-',
    '123456789012345',
    '-123456789012345',
    '1234567890123456',
    '9007199254740993',
    'true',
    'false',
    'truex',
    'inf',
    'nan',
    '1979-05-27',
    '{}',
  ),
);
const value = fc.oneof(
  scalar,
  fc
    .tuple(fc.array(scalar, { maxLength: 3 }), fc.constantFrom(',', ', ', ' , ', ',\n'), fc.boolean())
    .map(([items, sep, trailing]) => `[${items.join(sep)}${trailing ? sep : ''}]`),
  fc.constantFrom('[]', '[ ]', '[[1]]', '[\n1]'),
);
const keyValue = fc
  .tuple(
    key,
    fc.constantFrom(' = ', '=', ' =\t', ' '),
    value,
    plainOrNot(fc.constant(''), fc.constantFrom(' ', ' # c', ',')),
  )
  .map(([k, eq, v, tail]) => `${k}${eq}${v}${tail}`);
const line = fc.oneof(
  { weight: 2, arbitrary: header },
  { weight: 5, arbitrary: keyValue },
  fc.constantFrom('', '  ', '# c'),
);
const document = fc
  .tuple(
    fc.array(line, { maxLength: 12 }),
    plainOrNot(fc.constantFrom('\n', '\r\n'), fc.constant('\r')),
    fc.boolean(),
  )
  .map(([lines, eol, bom]) => (bom ? '\uFEFF' : '') + lines.join(eol));

describe('TOML: the plain subset', () => {
  it('gives what smol-toml gives for every document it accepts, and gives up on the others', () => {
    let accepted = 0;
    fc.assert(
      fc.property(document, (text) => {
        const plain = parsePlainToml(text);
        if (plain === undefined) return;
        accepted++;
        expect(same(plain, smol(text))).toBe(true);
      }),
      { numRuns: 3000 },
    );
    // The generator reaches the subset often enough for the property to mean something (about 9 % of the documents).
    expect(accepted).toBeGreaterThan(50);
  });

  it('reads every manifest the discovery bench generates and every plain one of the repository, as smol-toml', () => {
    const root = tempDir();
    generate(root, 20);
    const files = readdirSync(root).map((name) => join(root, name, 'plugin.toml'));
    for (const dir of ['examples/plugins', 'test/fixtures']) {
      const walk = (at: string) => {
        for (const name of readdirSync(at)) {
          const path = join(at, name);
          if (statSync(path).isDirectory()) walk(path);
          else if (name.endsWith('.toml')) files.push(path);
        }
      };
      walk(dir);
    }
    let plainOnes = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      let expected: unknown;
      try {
        expected = smol(text);
      } catch {
        expect(parsePlainToml(text)).toBeUndefined();
        continue;
      }
      const plain = parsePlainToml(text);
      if (plain === undefined) continue;
      plainOnes++;
      expect(same(plain, expected)).toBe(true);
      expect(same(parseToml(text), expected)).toBe(true);
    }
    // Every generated manifest is in the subset (the fast path is the one discovery takes for them).
    for (const file of files.slice(0, 20)) expect(parsePlainToml(readFileSync(file, 'utf8'))).toBeDefined();
    expect(plainOnes).toBeGreaterThanOrEqual(20);
  });

  it('leaves deep headers, duplicates and redefinitions to smol-toml, with its errors', () => {
    const deep = `[${Array.from({ length: 40 }, () => 'a').join('.')}]\n`;
    expect(parsePlainToml(deep)).toBeUndefined();
    expect(same(parseToml(deep), smol(deep))).toBe(true);
    for (const text of ['a = 1\na = 2\n', '[t]\n[t]\n', '[t.u]\n[t]\nu = 1\n', 'x = 1\n[x.y]\n']) {
      expect(parsePlainToml(text)).toBeUndefined();
      expect(() => parseToml(text)).toThrow();
    }
    // Allowed by TOML, outside the subset: still parsed, by smol-toml.
    expect(parsePlainToml('[t.u]\n[t]\nv = 1\n')).toBeUndefined();
    expect(parseToml('[t.u]\n[t]\nv = 1\n')).toEqual({ t: { u: {}, v: 1 } });
  });
});
