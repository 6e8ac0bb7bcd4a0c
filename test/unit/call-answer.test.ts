// The call route's answer (src/server/call-route.ts callAnswer), written by hand for speed (the API bench, issue 14):
// for every output it must be the text the generic path writes, jsonText of the same object (JSON.stringify, then
// the characters JSON leaves raw escaped). Each single byte, each byte inside printable text, and UTF-8 beyond ASCII.
import { describe, expect, it } from 'vitest';
import { jsonText } from '../../src/safe-text.js';
import { callAnswer, encodeOutput } from '../../src/server/call-route.js';

const stats = { fuelConsumed: 1234, durationMs: 0.012345678901 };
const reference = (output: Uint8Array) =>
  jsonText({
    ok: true,
    ...encodeOutput(output),
    stats: { fuelConsumed: stats.fuelConsumed, durationMs: stats.durationMs },
  });

describe('callAnswer', () => {
  it('is the generic JSON for every byte alone and inside printable text', () => {
    for (let b = 0; b < 256; b++) {
      const alone = new Uint8Array([b]);
      expect(callAnswer(alone, stats), `byte ${b}`).toBe(reference(alone));
      const inside = new Uint8Array([...Buffer.from('a<b> '), b, ...Buffer.from('"c\\d')]);
      expect(callAnswer(inside, stats), `byte ${b} inside text`).toBe(reference(inside));
    }
  });

  it('is the generic JSON for empty, ASCII, UTF-8, separators and bidi controls, and an offset view', () => {
    const backing = Buffer.from('..{"k": [1, "\\u0000"]}..');
    const outputs = [
      new Uint8Array(0),
      Buffer.from('x'.repeat(64)),
      Buffer.from('{"ok":true,"tab":"\t","quote":"\\""}'),
      Buffer.from('héllo wörld ✓ 𝄞'),
      Buffer.from('a\u007f\u0085\u2028\u2029\u202e\u2066b'),
      new Uint8Array(backing.buffer, backing.byteOffset + 2, backing.length - 4),
    ];
    for (const output of outputs) expect(callAnswer(output, stats)).toBe(reference(output));
    const view = outputs[5] as Uint8Array;
    expect(JSON.parse(callAnswer(view, stats) as string).output).toBe('{"k": [1, "\\u0000"]}');
  });

  it('writes figures that are not finite numbers as null', () => {
    const text = callAnswer(Buffer.from('x'), { fuelConsumed: Number.NaN, durationMs: 'soon' });
    expect(JSON.parse(text as string).stats).toEqual({ fuelConsumed: null, durationMs: null });
  });
});
