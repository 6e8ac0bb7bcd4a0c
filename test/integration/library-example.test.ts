import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/plugin-tree.js';

/** The first TypeScript block under README.md's "Library use" heading, as a user would copy it. */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Library use'));
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (block === undefined) throw new Error('README.md has no ```ts block under "## Library use"');
  return block;
}

describe("README's library example", () => {
  // Imports the package by its name (through package.json's exports map, as an installed copy would), compiled
  // by the project's TypeScript and run by this Node: the README cannot drift from the public API again.
  it('compiles and runs as written, against the package by its name', () => {
    const dir = tempDir('reed-readme-');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(REPO, join(dir, 'node_modules', 'reed-plugin-loader'), 'dir');
    cpSync(join(REPO, 'examples/plugins/hello'), join(dir, 'plugins', 'hello'), { recursive: true });
    writeFileSync(join(dir, 'example.ts'), readmeExample());
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          lib: ['ES2023', 'ESNext.Disposable'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(REPO, 'node_modules/@types')],
        },
        files: ['example.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    const out = execFileSync(process.execPath, [join(dir, 'example.js')], {
      cwd: dir,
      encoding: 'utf8',
      // A home of its own: the default search paths and data directories must not touch the real one.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
    });
    expect(out).toContain("id: 'example.hello'");
    expect(out).toContain("state: 'ready'");
  });
});
