import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CODES } from '../../src/codes.js';
import { LOADER_VERSION } from '../../src/version.js';

describe('codes and versions stay documented', () => {
  it('docs/CODES.md lists every code, and no code that does not exist', () => {
    const doc = readFileSync(new URL('../../docs/CODES.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `([a-z_]+)` *\|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(CODES).sort());
  });

  it('LOADER_VERSION is the package version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(LOADER_VERSION).toBe(pkg.version);
  });
});
