// A discovery worker validates manifests with the calling thread's validator given as code (ajv's standalone code,
// src/schema-check.ts) instead of compiling the schema again: the findings must be the same.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  manifestValidatorSource,
  parseManifest,
  useManifestValidator,
} from '../../src/manifest/parse-manifest.js';
import { loadValidator } from '../../src/schema-check.js';

const HEAD = '[metadata]\nid = "x"\nname = "X"\nversion = "1.0.0"\napi_version = "1.0.0"\n';
const MANIFESTS = [
  HEAD,
  readFileSync(new URL('../../docs/MANIFEST.md', import.meta.url), 'utf8').match(
    /```toml\n([\s\S]*?)```/,
  )?.[1] ?? '',
  '[metadata]\nid = "x"\nname = 1\nversion = 2\napi_version = "1.0.0"\npriority = 1.5\n',
  `${HEAD}licence = "MIT"\n`,
  `${HEAD}plugin_type = "elf"\nentry_point = 3\n`,
  `${HEAD}[permissions]\nstorage = "all"\nnetwork = "yes"\n[permissions.events]\nemit = [1]\n`,
  `${HEAD}[requirements]\ndependencies = [{ id = "a" }, { version = "1" }]\ncapabilities = "x"\n`,
  `${HEAD}[sandbox]\nmode = "vm"\nreplicas = 0\nidle_timeout = 5\n[limits]\nmemory = -1\n`,
  `[metadata]\nid = "${'é'.repeat(300)}"\nname = ""\nversion = "1.0.0"\napi_version = "1.0.0"\n`,
  '[metadata]\nname = "X"\nsurprise = { a = 1 }\n',
  'metadata = 1\n',
];

describe('the manifest validator given as code', () => {
  it('finds what the compiled validator finds, manifest by manifest', () => {
    const compiled = MANIFESTS.map((text) => parseManifest(text, 'f.toml'));
    expect(compiled.some((r) => r.diagnostics.length > 0)).toBe(true);
    const source = manifestValidatorSource();
    expect(loadValidator(source)).toBeTypeOf('function');
    useManifestValidator(source);
    expect(MANIFESTS.map((text) => parseManifest(text, 'f.toml'))).toEqual(compiled);
  });

  it('gives nothing for code that asks for another module or does not make a function', () => {
    expect(loadValidator('module.exports = require("node:fs");')).toBeUndefined();
    expect(loadValidator('module.exports = 42;')).toBeUndefined();
    expect(loadValidator('this is not code')).toBeUndefined();
  });
});
