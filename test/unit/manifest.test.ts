import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/manifest/parse-manifest.js';

describe('parseManifest', () => {
  it('applies every default to a minimal manifest', () => {
    const { manifest, diagnostics } = parseManifest(
      '[metadata]\nid = "m"\nname = "M"\nversion = "1.0.0"\napi_version = "1.0.0"\n',
      'plugin.toml',
    );
    expect(diagnostics).toEqual([]);
    expect(manifest).toEqual({
      metadata: { id: 'm', name: 'M', version: '1.0.0', apiVersion: '1.0.0', priority: 100, authors: [] },
      requirements: { dependencies: [], capabilities: [] },
      permissions: {
        storage: 'none',
        content: 'none',
        events: { emit: [], subscribe: [] },
        log: true,
        network: false,
        filesystem: 'none',
      },
      configuration: {},
      limits: {},
      sandbox: {},
      wasi: { args: [], env: {} },
    });
  });

  it('parses the complete example of docs/MANIFEST.md without a diagnostic', () => {
    const doc = readFileSync(new URL('../../docs/MANIFEST.md', import.meta.url), 'utf8');
    const example = /```toml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const { manifest, diagnostics } = parseManifest(example ?? '', 'MANIFEST.md');
    expect(diagnostics).toEqual([]);
    expect(manifest?.requirements.dependencies[0]).toEqual({
      id: 'com.example.storage-core',
      version: '^1.2',
      optional: false,
    });
    expect(manifest?.limits.memoryMb).toBe(32);
    expect(manifest?.configuration).toMatchObject({ greeting: 'Hello' });
  });

  it('reads [wasi] preopen, the data directory\u2019s guest name, and refuses one that is not an absolute plain path', () => {
    const head = '[metadata]\nid = "m"\nname = "M"\nversion = "1.0.0"\napi_version = "1.0.0"\n[wasi]\n';
    expect(parseManifest(`${head}preopen = "/"\n`, 'f.toml').manifest?.wasi).toEqual({
      args: [],
      env: {},
      preopen: '/',
    });
    expect(parseManifest(`${head}preopen = "/srv/x"\n`, 'f.toml').manifest?.wasi.preopen).toBe('/srv/x');
    for (const bad of ['data', '/..', '/a/../b', '/a/', '//', '/a b'])
      expect(
        parseManifest(`${head}preopen = ${JSON.stringify(bad)}\n`, 'f.toml').diagnostics.map((d) => [
          d.code,
          d.field,
        ]),
      ).toEqual([['manifest_invalid_value', 'wasi.preopen']]);
  });

  it('reports a syntax error with its line and column', () => {
    const [d] = parseManifest('[metadata]\nid = "x"\nname = \n', 'f.toml').diagnostics;
    expect(d).toMatchObject({ code: 'manifest_syntax', file: 'f.toml', line: 3 });
  });

  it('names every problem at once, each with its key path', () => {
    const { diagnostics } = parseManifest(
      '[metadata]\nid = "x"\nname = 1\nversion = 2\napi_version = "1.0.0"\npriority = 1.5\n',
      'f.toml',
    );
    expect(diagnostics.map((d) => [d.code, d.field])).toEqual([
      ['manifest_invalid_type', 'metadata.name'],
      ['manifest_invalid_type', 'metadata.version'],
      ['manifest_invalid_type', 'metadata.priority'],
    ]);
    expect(diagnostics[0]?.message).toBe('`metadata.name` must be a string, found the integer 1');
  });

  it('suggests the nearest known key for a typo', () => {
    const { diagnostics, manifest } = parseManifest(
      '[metadata]\nid = "x"\nname = "X"\nversion = "1.0.0"\napi_version = "1.0.0"\nlicence = "MIT"\n',
      'f.toml',
    );
    expect(manifest).toBeDefined();
    expect(diagnostics[0]?.message).toContain('did you mean `license`?');
  });

  it('accepts a byte-order mark', () => {
    const { diagnostics } = parseManifest(
      '\ufeff[metadata]\nid = "x"\nname = "X"\nversion = "1.0.0"\napi_version = "1.0.0"\n',
      'f.toml',
    );
    expect(diagnostics).toEqual([]);
  });

  it('names the configuration field of an unsafe integer or a nesting past the cap, through tables and arrays', () => {
    const fieldOf = (configuration: string) =>
      parseManifest(
        `[metadata]\nid = "c"\nname = "c"\nversion = "1.0.0"\napi_version = "1.0.0"\n\n[configuration]\n${configuration}\n`,
        'plugin.toml',
      ).diagnostics.find((d) => d.code === 'manifest_invalid_value')?.field;
    expect(fieldOf('ok = [1, 2]\nbig = 9007199254740993')).toBe('configuration.big');
    expect(fieldOf('a = { b = [1, { c = [7, 9007199254740993] }] }')).toBe('configuration.a.b[1].c[1]');
    expect(fieldOf('"odd key" = { "x.y" = [-9007199254740993] }')).toBe('configuration["odd key"]["x.y"][0]');
    expect(fieldOf(`deep = { t = ${'['.repeat(32)}1${']'.repeat(32)} }`)).toBe(
      `configuration.deep.t${'[0]'.repeat(31)}`,
    );
    expect(fieldOf('fine = { a = [1, 2, { b = "x" }] }')).toBeUndefined();
  });
});
