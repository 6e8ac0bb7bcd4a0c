import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify as stringifyToml } from 'smol-toml';
import { afterAll, afterEach, beforeEach } from 'vitest';

/** An empty but valid WASM module: enough for discovery, which does not read module contents. */
export const EMPTY_WASM = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

export interface ManifestFields {
  id?: string;
  name?: string;
  version?: string;
  api_version?: string;
  priority?: number;
  [key: string]: unknown;
}

/** A manifest as TOML: `metadata` from the common fields, other keys as top-level tables or values. */
export function manifestToml(fields: ManifestFields = {}): string {
  const {
    id = 'example',
    name,
    version = '1.0.0',
    api_version = '1.0.0',
    priority,
    metadata,
    ...rest
  } = fields;
  const md: Record<string, unknown> = { id, name: name ?? id, version, api_version, ...(metadata as object) };
  if (priority !== undefined) md.priority = priority;
  // Top-level values must come before tables in TOML.
  const scalars = Object.fromEntries(Object.entries(rest).filter(([, v]) => typeof v !== 'object'));
  const tables = Object.fromEntries(Object.entries(rest).filter(([, v]) => typeof v === 'object'));
  return stringifyToml({ ...scalars, metadata: md, ...tables });
}

/** Temporary directories removed after each test (made within one; see inTest). */
const made: string[] = [];
/**
 * True while a test (its beforeEach hooks included) runs. A tempDir made outside one (a file's or a describe's
 * beforeAll: a host or server several tests share) lasts until the file ends: removed after the first test, it took
 * with it the socket or runtime directory of a host the next tests used (slow-clients' Unix socket case).
 */
let inTest = false;
beforeEach(() => {
  inTest = true;
});
afterEach(() => {
  inTest = false;
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Directories removed after all the tests of a file (see lastingDir). */
const lasting: string[] = [];
afterAll(() => {
  for (const dir of lasting.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A tempDir that outlives the test that makes it (for a server or proxy a whole file uses), removed after the file. */
export function lastingDir(prefix = 'reed-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  lasting.push(dir);
  return dir;
}

export function tempDir(prefix = 'reed-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  (inTest ? made : lasting).push(dir);
  return dir;
}

/**
 * Writes a plugin directory `root/name` with a manifest (fields or raw text) and files (default: an empty
 * plugin.wasm). Returns its path.
 */
export function writePlugin(
  root: string,
  name: string,
  manifest: ManifestFields | string | Buffer = { id: name },
  files: Record<string, string | Buffer> = { 'plugin.wasm': EMPTY_WASM },
): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(
    join(dir, 'plugin.toml'),
    typeof manifest === 'string' || Buffer.isBuffer(manifest) ? manifest : manifestToml(manifest),
  );
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true, mode: 0o755 });
    writeFileSync(join(dir, rel), content);
  }
  return dir;
}
