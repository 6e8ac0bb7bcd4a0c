import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './cli.js';
import { tempDir, writePlugin } from './plugin-tree.js';

/** The data-dir fixture (fill, put, get: its failures are the errno's name), in a plugin directory of its own. */
export function filesPluginDir(): string {
  const root = tempDir('reed-tenant-fs-');
  writePlugin(
    root,
    'fs.a',
    { id: 'fs.a', permissions: { filesystem: 'readwrite' } },
    { 'plugin.wasm': readFileSync(join(REPO, 'test/fixtures/data-dir/files/plugin.wasm')) },
  );
  return root;
}

/** Mount points of this process's namespace under `dir`. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** Loop devices attached to a file under `dir` (`losetup -a`). */
export function loopsUnder(dir: string): string[] {
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(dir));
}

export const MiB = 1024 * 1024;
