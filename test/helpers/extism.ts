import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './cli.js';
import { type ManifestFields, manifestToml } from './plugin-tree.js';

/** Extism's own published test plugins, vendored (test/fixtures/third-party/extism/PROVENANCE.md). */
export const EXTISM_FIXTURES = join(REPO, 'test/fixtures/third-party/extism');
/** Our Extism plugins' sources, built by the tests with Extism's PDKs (AssemblyScript and C). */
export const EXTISM_SOURCES = join(REPO, 'test/fixtures/extism');

/** Writes plugin directory `root/id` running `wasm` (a file path), with a manifest of `id` and `fields`. */
export function extismPlugin(root: string, id: string, wasm: string, fields: ManifestFields = {}): string {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'plugin.toml'), manifestToml({ id, ...fields }));
  copyFileSync(wasm, join(dir, 'plugin.wasm'));
  return dir;
}

/**
 * Builds test/fixtures/extism/as/index.ts with AssemblyScript and @extism/as-pdk (both npm devDependencies), as
 * the PDK's README says (`--use abort=` to a function of the plugin's own, so nothing is imported from `env`).
 * Returns the module's path under `out`.
 */
export function buildAssemblyScriptPlugin(out: string): string {
  const file = join(out, 'as-plugin.wasm');
  execFileSync(
    join(REPO, 'node_modules/.bin/asc'),
    [
      join(EXTISM_SOURCES, 'as/index.ts'),
      '--outFile',
      file,
      '--optimize',
      '--use',
      'abort=test/fixtures/extism/as/index/myAbort',
    ],
    { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  return file;
}

/**
 * Builds test/fixtures/extism/c/extism-plugin.c with Extism's C PDK (its single header, vendored under
 * test/fixtures/third-party/extism-c-pdk/) and clang for wasm32-wasi, a reactor, as the PDK's examples build.
 * Returns the module's path under `out`.
 */
export function buildCPlugin(out: string): string {
  const file = join(out, 'c-plugin.wasm');
  execFileSync(
    'clang',
    [
      '--target=wasm32-wasi',
      '-O2',
      '-Wall',
      '-Werror',
      '-mexec-model=reactor',
      `-I${join(REPO, 'test/fixtures/third-party/extism-c-pdk')}`,
      '-o',
      file,
      join(EXTISM_SOURCES, 'c/extism-plugin.c'),
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  return file;
}
