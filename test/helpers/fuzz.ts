// Fuzzing with fast-check (issue 17). Every target runs in `npm test` with a fixed seed and a small run count
// (a few seconds each); `npm run fuzz` (scripts/fuzz.sh) runs them long: REED_FUZZ_RUNS sets the runs of every
// target, REED_FUZZ_SEED the seed (scripts/fuzz.sh picks and prints one), and REED_FUZZ_REPORT names a file each
// target appends a JSON line to (target, runs, seed, milliseconds) for docs/RELIABILITY.md's table.
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

/** The seed of the bounded runs in `npm test`: the same inputs on every machine. */
export const DEFAULT_FUZZ_SEED = 17_017;

function envNumber(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${text} is not a whole number`);
  return n;
}

/** The runs a target makes: REED_FUZZ_RUNS when set, else its bounded count for `npm test`. */
export function fuzzRuns(bounded: number): number {
  return envNumber('REED_FUZZ_RUNS') ?? bounded;
}

/** The parameters every target runs with: the seed, the runs, and no time limit of fast-check's own. */
export function fuzzParameters<T>(bounded: number): fc.Parameters<T> {
  return { seed: envNumber('REED_FUZZ_SEED') ?? DEFAULT_FUZZ_SEED, numRuns: fuzzRuns(bounded) };
}

/** Runs `property` as target `name` (fc.assert's answer: a counterexample fails the test with its seed and path). */
export async function fuzz<T>(
  name: string,
  bounded: number,
  property: fc.IProperty<T> | fc.IAsyncProperty<T>,
): Promise<void> {
  const parameters = fuzzParameters<T>(bounded);
  const started = process.hrtime.bigint();
  await fc.assert(property as fc.IAsyncProperty<T>, parameters);
  const ms = Number((process.hrtime.bigint() - started) / 1_000_000n);
  const report = process.env.REED_FUZZ_REPORT;
  if (report !== undefined && report !== '')
    appendFileSync(
      report,
      `${JSON.stringify({ target: name, runs: parameters.numRuns, seed: parameters.seed, ms })}\n`,
    );
}

/** A byte-level mutation of `bytes`: flipped, overwritten, inserted or deleted bytes, or a cut. */
export function mutated(bytes: Uint8Array): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      values: fc.uint8Array({ maxLength: 8 }),
    }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 6 }).map((edits) => {
    let out = Buffer.from(bytes);
    for (const e of edits) {
      const at = out.length === 0 ? 0 : e.at % (out.length + (e.kind === 'insert' ? 1 : 0));
      if (e.kind === 'flip' && out.length > 0) out[at] = (out[at] as number) ^ (1 << e.bit);
      else if (e.kind === 'set' && out.length > 0) out[at] = e.value;
      else if (e.kind === 'insert') out = Buffer.concat([out.subarray(0, at), e.values, out.subarray(at)]);
      else if (e.kind === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + e.count)]);
      else if (e.kind === 'cut') out = out.subarray(0, at);
    }
    return new Uint8Array(out);
  });
}

/** `bytes` cut into chunks at the given points (as a socket may deliver them). */
export function chunked(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort(
    (a, b) => a - b,
  );
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) chunks.push(Buffer.from(bytes.subarray(from, p)));
    from = Math.max(from, p);
  }
  if (from < bytes.length) chunks.push(Buffer.from(bytes.subarray(from)));
  return chunks;
}
