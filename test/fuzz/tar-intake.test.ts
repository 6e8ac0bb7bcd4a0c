// Fuzzing the tar intake of installs (issue 17): generated archives (any names, types, links, sizes, modes) and
// byte mutations of them. Each is refused with install_archive_invalid and a known reason, or accepted as a clean
// tree: only plain files and directories, within the caps, holding what the archive said; and nothing is ever
// written outside the staging directory.
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ReedError } from '../../src/errors.js';
import { extractPluginTar, type IntakeLimits } from '../../src/host/tar-intake.js';
import { fuzz, mutated } from '../helpers/fuzz.js';
import { stream, type TarEntry, tarOf } from '../helpers/tar.js';

const LIMITS: IntakeLimits = { maxFileBytes: 2048, maxPluginBytes: 6000, maxFiles: 8, maxDepth: 3 };
const REASONS = [
  'path_traversal',
  'absolute_path',
  'name_invalid',
  'link',
  'special_file',
  'file_too_large',
  'too_large',
  'too_many_files',
  'too_deep',
  'duplicate',
  'corrupt',
];

const root = mkdtempSync(join(tmpdir(), 'reed-fuzz-tar-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const segment = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'b', 'plugin.toml', 'plugin.wasm', 'dir') },
  fc.constantFrom('..', '.', '', '\u0000', 'x\\y', '\ufffd', 'x'.repeat(256), '\u007f', 'é'),
  fc.string({ maxLength: 6 }),
);
const name = fc
  .tuple(fc.boolean(), fc.array(segment, { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([absolute, segments, slash]) => `${absolute ? '/' : ''}${segments.join('/')}${slash ? '/' : ''}`);
const entry: fc.Arbitrary<TarEntry> = fc.record(
  {
    name,
    type: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('file' as const, 'directory' as const) },
      fc.constantFrom(
        'symlink' as const,
        'link' as const,
        'fifo' as const,
        'character-device' as const,
        'block-device' as const,
        'contiguous-file' as const,
      ),
    ),
    linkname: fc.constantFrom('../../outside', '/etc/passwd', 'a', '..'),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    content: fc.oneof(
      fc.string({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)),
    ),
  },
  { requiredKeys: ['name', 'type'] },
);

/** The archive of `entries`, or undefined when tar-stream will not write such headers. */
async function archive(entries: TarEntry[]): Promise<Buffer | undefined> {
  const clean = entries.map((e) =>
    // A file entry without its body would wait for one (tar-stream's entry stream): an empty one then.
    e.type === 'file' || e.type === 'contiguous-file'
      ? { ...e, content: e.content ?? '' }
      : { ...e, content: undefined },
  );
  try {
    return await tarOf(clean);
  } catch {
    return undefined;
  }
}

/** Everything under `dir`: relative path -> 'dir' | 'file' | what else lstat saw. */
function walk(dir: string, prefix = '', out = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    const st = lstatSync(join(dir, name));
    out.set(rel, st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other');
    if (st.isDirectory()) walk(join(dir, name), rel, out);
  }
  return out;
}

let run = 0;
/** Extracts `bytes` into a fresh staging directory beside a sentinel: what came of it. */
async function intake(bytes: Buffer): Promise<{ error?: unknown; tree: Map<string, string>; into: string }> {
  const base = join(root, String(run++));
  const into = join(base, 'staging');
  mkdirSync(into, { recursive: true });
  writeFileSync(join(base, 'sentinel'), 'x');
  let error: unknown;
  try {
    await extractPluginTar(stream(bytes), into, LIMITS, 'p');
  } catch (e) {
    error = e;
  }
  // Nothing outside staging: the base holds what the test put there, unchanged.
  expect(readdirSync(base).sort()).toEqual(['sentinel', 'staging']);
  expect(readFileSync(join(base, 'sentinel'), 'utf8')).toBe('x');
  const tree = walk(into);
  rmSync(base, { recursive: true, force: true });
  return { error, tree, into };
}

function checkRefusal(error: unknown): void {
  expect(error).toBeInstanceOf(ReedError);
  const e = error as ReedError;
  expect(e.code).toBe('install_archive_invalid');
  expect(REASONS).toContain((e.details as { reason: string }).reason);
}

/** An accepted tree: plain files and directories only, within the caps. */
function checkTree(tree: Map<string, string>): void {
  expect([...tree.values()].every((kind) => kind === 'dir' || kind === 'file')).toBe(true);
  expect(tree.size).toBeLessThanOrEqual(LIMITS.maxFiles);
  for (const rel of tree.keys()) expect(rel.split('/').length).toBeLessThanOrEqual(LIMITS.maxDepth);
}

describe('the tar intake', () => {
  it('refuses generated archives cleanly or accepts them as the clean tree they hold', async () => {
    await fuzz(
      'tar intake: generated archives',
      150,
      fc.asyncProperty(fc.array(entry, { maxLength: 6 }), async (entries) => {
        const bytes = await archive(entries);
        fc.pre(bytes !== undefined);
        const out = await intake(bytes as Buffer);
        if (out.error !== undefined) return checkRefusal(out.error);
        checkTree(out.tree);
        // Accepted: every file is one the archive named, as a file.
        const files = new Set(
          entries
            .filter((e) => e.type === 'file')
            // A tar header's name ends at its first NUL: that is the name the archive holds.
            .map((e) =>
              (e.name.split('\0')[0] as string)
                .split('/')
                .filter((s) => s !== '' && s !== '.')
                .join('/'),
            ),
        );
        for (const [rel, kind] of out.tree) if (kind === 'file') expect(files).toContain(rel);
      }),
    );
  });

  it('refuses mutated archives cleanly or accepts a clean tree, writing nothing outside staging', async () => {
    // Archives of plain files and directories: the mutations make whatever else there is.
    const seeds = fc
      .array(entry, { minLength: 1, maxLength: 4 })
      .map((entries) =>
        entries.map((e) =>
          e.type === 'file' || e.type === 'directory' ? e : { ...e, type: 'file' as const },
        ),
      );
    await fuzz(
      'tar intake: mutated archives',
      150,
      fc.asyncProperty(
        seeds,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.context(),
        async (entries, edits, ctx) => {
          const bytes = await archive(entries);
          fc.pre(bytes !== undefined);
          const b = Buffer.from(bytes as Buffer);
          // Mutations where they matter most: the first header blocks (names, sizes, types, checksums).
          for (const [at, value] of edits) b[at % Math.min(b.length, 2048)] = value;
          ctx.log(`edits ${JSON.stringify(edits)}`);
          const out = await intake(b);
          if (out.error !== undefined) return checkRefusal(out.error);
          checkTree(out.tree);
        },
      ),
    );
  });

  it('refuses arbitrary byte mutations of a plain archive cleanly or accepts a clean tree', async () => {
    const plain = await tarOf([
      { name: 'plugin.toml', content: '[metadata]\nid = "p"\n' },
      { name: 'dir/', type: 'directory' },
      { name: 'dir/plugin.wasm', content: Buffer.alloc(700, 1) },
    ]);
    await fuzz(
      'tar intake: byte mutations of a plain archive',
      150,
      fc.asyncProperty(mutated(plain), async (bytes) => {
        const out = await intake(Buffer.from(bytes));
        if (out.error !== undefined) return checkRefusal(out.error);
        checkTree(out.tree);
      }),
    );
  });
});
