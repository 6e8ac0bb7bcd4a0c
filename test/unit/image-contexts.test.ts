// The sweep of image build contexts that killed hosts left in the temporary directory (src/backends/container/
// images.ts): a context is removed only when its owner was a process of this pid namespace that is gone. A host
// in a container sharing /tmp has pids of its own, and a pid may be reused: those contexts are builds in progress.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashTree, removeStaleContexts } from '../../src/backends/container/images.js';
import { ownMark, pidNamespaceInode, processStart } from '../../src/process-identity.js';
import { tempDir } from '../helpers/plugin-tree.js';

describe('removeStaleContexts', () => {
  it('removes a gone owner’s contexts of this pid namespace, and leaves live ones, other namespaces’ and links', () => {
    const dir = tempDir('reed-image-contexts-');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid as number;
    const ns = pidNamespaceInode();
    const parentStart = processStart(process.ppid) as string;
    const dead = [
      `reed-image-h${ns}.${gone}.0-AbC123`,
      `reed-image-h${ns}.${process.ppid}.${Number(parentStart) + 1}-xYz789`,
    ];
    const live = [
      `reed-image-${ownMark()}-AbC123`,
      `reed-image-h${ns}.${process.ppid}.${parentStart}-AbC123`,
      `reed-image-h${Number(ns) + 1}.${gone}.0-AbC123`,
      // The form before marks (a pid alone): not judged, left.
      `reed-image-${gone}-AbC123`,
    ];
    for (const name of [...dead, ...live]) mkdirSync(join(dir, name));
    const target = tempDir('reed-image-target-');
    mkdirSync(join(target, 'keep'));
    const link = `reed-image-h${ns}.${gone}.0-LiNk00`;
    symlinkSync(target, join(dir, link));
    expect(removeStaleContexts(dir).sort()).toEqual([...dead].sort());
    expect(readdirSync(dir).sort()).toEqual([...live, link].sort());
    expect(readdirSync(target)).toEqual(['keep']);
  });
});

describe('hashTree', () => {
  it('leaves out the runner\u2019s code caches (new bytes each build), and nothing else: any other file or .cache counts', () => {
    const dir = tempDir('reed-image-hash-');
    mkdirSync(join(dir, 'app/dist/runner'), { recursive: true });
    mkdirSync(join(dir, 'plugin'), { recursive: true });
    writeFileSync(join(dir, 'app/dist/runner/runner.js'), 'runner');
    writeFileSync(join(dir, 'plugin/data.cache'), 'a');
    const before = hashTree(dir, 'salt');
    for (const heap of ['128', 'default'])
      writeFileSync(join(dir, `app/dist/runner/runner.js.heap-${heap}.cache`), heap);
    expect(hashTree(dir, 'salt')).toBe(before);
    writeFileSync(join(dir, 'app/dist/runner/runner.js.heap-default.cache'), 'another build');
    expect(hashTree(dir, 'salt')).toBe(before);
    writeFileSync(join(dir, 'plugin/data.cache'), 'b');
    expect(hashTree(dir, 'salt')).not.toBe(before);
    const changed = hashTree(dir, 'salt');
    writeFileSync(join(dir, 'app/dist/runner/runner.js'), 'runner 2');
    const runner2 = hashTree(dir, 'salt');
    expect(runner2).not.toBe(changed);
    writeFileSync(join(dir, 'app/dist/runner/other.cache'), 'x');
    expect(hashTree(dir, 'salt')).not.toBe(runner2);
  });
});
