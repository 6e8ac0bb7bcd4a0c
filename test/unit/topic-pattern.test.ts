import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/manifest/parse-manifest.js';
import {
  MAX_TOPIC_PATTERN_STARS,
  matchTopic,
  patternCovers,
  topicPatternProblem,
} from '../../src/manifest/topic-pattern.js';
import { manifestToml } from '../helpers/plugin-tree.js';

/** The reference: a textbook dynamic-programming glob matcher (`*` any run, everything else literal). */
function reference(pattern: string, text: string): boolean {
  const m = pattern.length;
  const n = text.length;
  let row = new Array<boolean>(n + 1).fill(false);
  row[0] = true;
  for (let i = 1; i <= m; i++) {
    const next = new Array<boolean>(n + 1).fill(false);
    const p = pattern[i - 1];
    next[0] = p === '*' && (row[0] as boolean);
    for (let j = 1; j <= n; j++) {
      next[j] =
        p === '*'
          ? (row[j] as boolean) || (next[j - 1] as boolean)
          : p === text[j - 1] && (row[j - 1] as boolean);
    }
    row = next;
  }
  return row[n] as boolean;
}

/** A small deterministic generator, so a failure names a case that can be run again. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1_664_525 + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

const word = (next: () => number, alphabet: string, max: number) =>
  Array.from(
    { length: Math.floor(next() * (max + 1)) },
    () => alphabet[Math.floor(next() * alphabet.length)],
  ).join('');

describe('matchTopic', () => {
  it.each([
    ['*', '', true],
    ['*', 'anything.at.all', true],
    ['user.created', 'user.created', true],
    ['user.created', 'user.created2', false],
    ['user.*', 'user.created', true],
    ['user.*', 'user.', true],
    ['user.*', 'user', false],
    ['*.created', 'user.created', true],
    ['*.created', 'user.deleted', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false],
    ['a**b', 'ab', true],
    ['a*a', 'a', false],
    ['.+?', '.+?', true],
    ['(a)', 'a', false],
  ])('%s against %s -> %s', (pattern, topic, expected) => {
    expect(matchTopic(pattern, topic)).toBe(expected);
    expect(reference(pattern, topic)).toBe(expected);
  });

  it('agrees with the reference matcher on 20,000 generated cases', () => {
    const next = rng(10);
    for (let i = 0; i < 20_000; i++) {
      const pattern = word(next, 'ab*', 8);
      const topic = word(next, 'ab', 10);
      if (matchTopic(pattern, topic) !== reference(pattern, topic)) {
        throw new Error(`disagreement on pattern ${JSON.stringify(pattern)}, topic ${JSON.stringify(topic)}`);
      }
    }
  });

  it('answers the backtracking case (a*a*...b against 100 KB of "a") at once', () => {
    const pattern = `${'a*'.repeat(MAX_TOPIC_PATTERN_STARS)}b`;
    expect(matchTopic(pattern, 'a'.repeat(100_000))).toBe(false);
    expect(matchTopic(pattern, `${'a'.repeat(100_000)}b`)).toBe(true);
    expect(patternCovers(pattern, 'a'.repeat(100_000))).toBe(false);
  });
});

describe('patternCovers (validate: a manifest pattern under a policy pattern)', () => {
  it.each([
    ['*', 'x.*', true],
    ['user.*', 'user.*', true],
    ['user.*', 'user.created.*', true],
    ['user.*', '*', false],
    ['a*c', 'a*b*c', true],
    ['a*b', 'a*', false],
    ['*x*', 'a*', false],
  ])('%s covers %s -> %s', (allowed, requested, expected) => {
    expect(patternCovers(allowed, requested)).toBe(expected);
  });

  it('is sound: whenever it says yes, every topic the request matches is allowed (generated)', () => {
    const next = rng(11);
    for (let i = 0; i < 5_000; i++) {
      const allowed = word(next, 'ab*', 6);
      const requested = word(next, 'ab*', 6);
      if (!patternCovers(allowed, requested)) continue;
      for (let k = 0; k < 20; k++) {
        const topic = requested.replace(/\*/g, () => word(next, 'ab', 3));
        if (!reference(allowed, topic))
          throw new Error(`${allowed} said to cover ${requested}, but not its topic ${topic}`);
      }
    }
  });
});

describe('topic patterns at validate', () => {
  it('accepts up to the star cap and refuses one more, naming the field', () => {
    expect(topicPatternProblem(`${'a*'.repeat(MAX_TOPIC_PATTERN_STARS)}b`)).toBeUndefined();
    const tooMany = `${'a*'.repeat(MAX_TOPIC_PATTERN_STARS + 1)}b`;
    expect(topicPatternProblem(tooMany)).toBeDefined();
    for (const kind of ['emit', 'subscribe']) {
      const result = parseManifest(
        manifestToml({ id: 'p', permissions: { events: { [kind]: ['ok.*', tooMany] } } }),
        'plugin.toml',
      );
      expect(result.manifest).toBeUndefined();
      expect(result.diagnostics).toContainEqual(
        expect.objectContaining({
          code: 'manifest_invalid_value',
          severity: 'error',
          field: `permissions.events.${kind}[1]`,
        }),
      );
    }
  });
});
