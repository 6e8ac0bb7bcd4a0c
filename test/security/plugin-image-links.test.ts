import { cpSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashTree } from '../../src/backends/container/images.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Adversarial pass (session 10): a plugin's links inside its own directory (discovery accepts them: only links
 * leaving the directory are refused) against the context of its container image (images.ts, ensurePluginImage).
 * The context is a copy of the plugin directory made by cpSync, which turns each relative link into an absolute one
 * into the host's plugin directory; hashTree, on the host's thread and at every image check, then follows every
 * link with statSync/readFileSync. So a plugin with one large file and many links to it makes the host hash the file
 * once per link: 100 links to a 4 MiB file took 700 ms of CPU against 20 ms for the file alone (load ~12); within
 * discovery's caps (10,000 files, 256 MiB a file) that is 2.5 TB read on the host's thread, every other plugin and
 * tenant waiting. A link to its own directory (`a -> .`) makes the walk go down it until ELOOP, and the image is
 * never built.
 */
describe('the hash of a plugin image’s context against the plugin’s own links', () => {
  it('does not read through a link: what it points at does not change the hash', () => {
    const outside = tempDir('reed-adv-plugin-');
    writeFileSync(join(outside, 'big.bin'), 'first');
    const context = tempDir('reed-adv-context-');
    mkdirSync(join(context, 'plugin'));
    symlinkSync('big.bin', join(outside, 'link'));
    // As ensurePluginImage copies a plugin directory into its context today (cpSync without verbatimSymlinks).
    cpSync(outside, join(context, 'plugin'), { recursive: true, dereference: false });
    // The context's link points into the host's plugin directory, not at the context's own copy of big.bin.
    expect(readlinkSync(join(context, 'plugin', 'link'))).toBe(join(outside, 'big.bin'));
    const before = hashTree(context, 'salt');
    writeFileSync(join(outside, 'big.bin'), 'second');
    // Today: the hash changes, the link's target (in the host's plugin directory, outside the context) was read.
    expect(hashTree(context, 'salt')).toBe(before);
  });

  it('hashes a link to the plugin’s own directory without walking down it', () => {
    const context = tempDir('reed-adv-context-');
    mkdirSync(join(context, 'plugin'));
    writeFileSync(join(context, 'plugin', 'plugin.wasm'), 'x');
    symlinkSync('.', join(context, 'plugin', 'a'));
    symlinkSync('.', join(context, 'plugin', 'b'));
    // Today: ELOOP (plugin/a/a/a/... forty deep), thrown out of ensurePluginImage.
    expect(() => hashTree(context, 'salt')).not.toThrow();
  });
});
