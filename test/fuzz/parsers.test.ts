// Fuzzing the manifest and reed.toml parsers (issue 17): TOML documents generated from the known tables and keys
// with values of any type, and mutations of the documented examples (docs/MANIFEST.md's complete manifest,
// README's reed.toml), as text and as bytes. A manifest gets Diagnostics with known codes, never a throw; a
// reed.toml gives a configuration or a coded ReedError (config_invalid), never anything else.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { isCode } from '../../src/codes.js';
import { ReedError } from '../../src/errors.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { parseManifest, readManifest } from '../../src/manifest/parse-manifest.js';
import { REPO } from '../helpers/cli.js';
import { fuzz, mutated } from '../helpers/fuzz.js';

const dir = mkdtempSync(join(tmpdir(), 'reed-fuzz-parsers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first ```toml block of `doc` that holds `marker`. */
function tomlBlock(doc: string, marker: string): string {
  const blocks = readFileSync(join(REPO, doc), 'utf8').split('```toml\n').slice(1);
  const block = blocks.map((b) => b.split('```')[0] as string).find((b) => b.includes(marker));
  if (block === undefined) throw new Error(`${doc} has no toml block with ${marker}`);
  return block;
}
const MANIFEST = tomlBlock('docs/MANIFEST.md', '[metadata]');
const REED_TOML = tomlBlock('README.md', '[sandbox]').replaceAll('"..."', '"."');

/** A TOML value of any type, nested a little. */
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.constantFrom('1.0.0', '^1.2', 'none', 'read', 'readwrite', 'process', 'wasm', 'reed', '*', 'a.b'),
    fc.integer(),
    fc.constantFrom(0, -1, 2 ** 53, -(2 ** 53), 1e300),
    fc.double(),
    fc.boolean(),
    fc.date({ noInvalidDate: true }),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  ),
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('array'), tie('table')),
  array: fc.array(tie('node'), { maxLength: 4 }),
  table: fc.dictionary(
    fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('id', 'version', 'mode')),
    tie('node'),
    {
      maxKeys: 4,
    },
  ),
})).node;

/** A document from `known` tables and keys (and some unknown ones), each key holding any value. */
function document(known: Record<string, string[]>): fc.Arbitrary<Record<string, unknown>> {
  const tables = Object.entries(known).map(([table, keys]) =>
    fc.tuple(
      fc.constant(table),
      fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 6 })), value, { maxKeys: 6 }),
    ),
  );
  return fc
    .tuple(
      fc.subarray(tables.map((_t, i) => i)),
      fc.tuple(...tables),
      fc.dictionary(fc.string({ maxLength: 6 }), value, { maxKeys: 2 }),
    )
    .map(([chosen, all, extra]) => {
      const doc: Record<string, unknown> = { ...extra };
      for (const i of chosen) {
        const [table, entries] = all[i] as [string, Record<string, unknown>];
        if (table === '') Object.assign(doc, entries);
        else doc[table] = entries;
      }
      return doc;
    });
}

/** TOML text of `doc` (smol-toml refuses some generated values, such as a bigint beyond 64 bits: skipped). */
const toml = (doc: fc.Arbitrary<Record<string, unknown>>) =>
  doc
    .map((d) => {
      try {
        return stringify(d);
      } catch {
        return undefined;
      }
    })
    .filter((t): t is string => t !== undefined);

/** Text mutations that matter to TOML: its punctuation and quotes inserted, lines and characters dropped. */
function mutatedText(text: string): fc.Arbitrary<string> {
  const piece = fc.oneof(
    fc.constantFrom(
      '[',
      ']',
      '[[',
      '=',
      '"',
      "'",
      '"""',
      '\n',
      '#',
      ',',
      '{',
      '}',
      '.',
      '\\',
      '\\u',
      '0x',
      '1e999',
      '\u0000',
      '\ufeff',
    ),
    fc.string({ maxLength: 6, unit: 'binary' }),
  );
  const edit = fc.tuple(fc.nat(), fc.nat({ max: 12 }), piece);
  return fc.array(edit, { minLength: 1, maxLength: 5 }).map((edits) => {
    let out = text;
    for (const [at, drop, insert] of edits) {
      const i = at % (out.length + 1);
      out = out.slice(0, i) + insert + out.slice(i + drop);
    }
    return out;
  });
}

const MANIFEST_TABLES: Record<string, string[]> = {
  '': ['plugin_type', 'entry_point', 'abi'],
  metadata: [
    'id',
    'name',
    'version',
    'api_version',
    'priority',
    'description',
    'authors',
    'license',
    'homepage',
  ],
  requirements: ['min_reed_version', 'capabilities', 'dependencies'],
  permissions: ['storage', 'content', 'log', 'network', 'filesystem', 'events'],
  limits: ['memory_mb', 'call_timeout_ms', 'fuel_per_call', 'disk_mb'],
  sandbox: ['mode', 'runtime'],
  wasi: ['args', 'env', 'preopen'],
  configuration: ['greeting', 'max_items'],
};

function checkManifestResult(result: ReturnType<typeof parseManifest>): void {
  for (const d of result.diagnostics) {
    expect(isCode(d.code), d.code).toBe(true);
    expect(['error', 'warning']).toContain(d.severity);
    expect(typeof d.message).toBe('string');
  }
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  expect(result.manifest === undefined).toBe(errors.length > 0);
}

describe('the manifest parser', () => {
  it('the documented example parses clean (the seed the mutations start from)', () => {
    const result = parseManifest(MANIFEST, 'plugin.toml');
    expect(result.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  });

  it('answers generated manifests with Diagnostics, never a throw', async () => {
    await fuzz(
      'manifest: generated TOML',
      400,
      fc.property(toml(document(MANIFEST_TABLES)), (text) =>
        checkManifestResult(parseManifest(text, 'plugin.toml')),
      ),
    );
  });

  it('answers mutations of the documented manifest with Diagnostics, never a throw', async () => {
    await fuzz(
      'manifest: mutated text',
      250,
      fc.property(mutatedText(MANIFEST), (text) => checkManifestResult(parseManifest(text, 'plugin.toml'))),
    );
  });

  it('answers mutated manifest bytes read from a file (UTF-8, BOM, size) with Diagnostics', async () => {
    const file = join(dir, 'plugin.toml');
    await fuzz(
      'manifest: mutated bytes from a file',
      200,
      fc.property(mutated(Buffer.from(MANIFEST)), (bytes) => {
        writeFileSync(file, bytes);
        const result = readManifest(file, 4096);
        checkManifestResult(result);
      }),
    );
  });
});

const CONFIG_TABLES: Record<string, string[]> = {
  '': [
    'plugin_dirs',
    'default_search_paths',
    'reed_version',
    'capabilities',
    'cache_dir',
    'data_dir',
    'runtime_dir',
  ],
  sandbox: ['mode', 'runtime', 'runner_uids', 'runner_command', 'start_timeout_ms'],
  wasm: ['max_module_bytes', 'fuel', 'max_functions'],
  cache: ['enabled', 'max_bytes'],
  limits: ['memory_mb', 'call_timeout_ms', 'disk_mb', 'fuel_per_call'],
  files: ['max_manifest_bytes', 'max_file_bytes', 'max_plugin_bytes', 'max_files', 'max_depth'],
  supervision: ['max_crashes', 'crash_window_ms', 'breaker_cooldown_ms'],
  lifecycle: ['probation_ms', 'drain_timeout_ms', 'max_concurrent_installs', 'install_queue'],
  signatures: ['require', 'trusted_keys'],
  policy: ['allowed_sandbox_modes', 'allow_native_in_process', 'permissions', 'limits'],
  tenants: ['enabled', 'default'],
};

/** loadHostConfig on `text`: a configuration, or a coded ReedError. */
function loadConfigText(text: string | Uint8Array): void {
  const file = join(dir, 'reed.toml');
  writeFileSync(file, text);
  try {
    const config = loadHostConfig({ file, cwd: dir, env: {}, home: dir });
    expect(typeof config).toBe('object');
  } catch (error) {
    expect(error).toBeInstanceOf(ReedError);
    expect(isCode((error as ReedError).code)).toBe(true);
    expect((error as ReedError).code).toBe('config_invalid');
  }
}

describe('the reed.toml parser', () => {
  it("README's reed.toml loads (the seed the mutations start from)", () => {
    const file = join(dir, 'reed.toml');
    writeFileSync(file, REED_TOML);
    expect(() => loadHostConfig({ file, cwd: dir, env: {}, home: dir })).not.toThrow();
  });

  it('answers generated reed.toml with a configuration or config_invalid', async () => {
    await fuzz('reed.toml: generated TOML', 300, fc.property(toml(document(CONFIG_TABLES)), loadConfigText));
  });

  it("answers mutations of README's reed.toml with a configuration or config_invalid", async () => {
    await fuzz(
      'reed.toml: mutated text and bytes',
      300,
      fc.property(fc.oneof(mutatedText(REED_TOML), mutated(Buffer.from(REED_TOML))), loadConfigText),
    );
  });
});
