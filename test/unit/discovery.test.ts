import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultSearchPaths, discoverPlugins } from '../../src/discovery/discover.js';
import { EMPTY_WASM, manifestToml, tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { scan } from '../helpers/scan.js';

describe('discovery', () => {
  it('finds plugin.toml at a search path root and one level down, skipping dot-directories', () => {
    const root = tempDir();
    writeFileSync(join(root, 'plugin.toml'), manifestToml({ id: 'root-plugin' }));
    writeFileSync(join(root, 'plugin.wasm'), EMPTY_WASM);
    writePlugin(root, 'child', { id: 'child' });
    writePlugin(root, '.hidden', { id: 'hidden' });
    writePlugin(join(root, 'child'), 'grandchild', { id: 'too-deep-to-discover' });
    const ids = discoverPlugins({ searchPaths: [root] }).candidates.map((c) => c.id);
    expect(ids.sort()).toEqual(['child', 'root-plugin']);
  });

  it('sorts by priority, then name, then id', () => {
    const root = tempDir();
    writePlugin(root, 'a', { id: 'a', name: 'Zed', priority: 10 });
    writePlugin(root, 'b', { id: 'b', name: 'Alpha', priority: 10 });
    writePlugin(root, 'c', { id: 'c', name: 'Alpha', priority: 5 });
    writePlugin(root, 'd', { id: 'd' }); // default priority 100
    expect(discoverPlugins({ searchPaths: [root] }).candidates.map((c) => c.id)).toEqual([
      'c',
      'b',
      'a',
      'd',
    ]);
  });

  it('lets the earliest search path win for an id found twice, and names the shadowed copy', () => {
    const first = tempDir();
    const second = tempDir();
    writePlugin(first, 'mine', { id: 'shared', version: '2.0.0' });
    writePlugin(second, 'system', { id: 'shared', version: '1.0.0' });
    const result = scan([first, second]);
    const winner = result.byDir('mine');
    const loser = result.byDir('system');
    expect(winner.status).toBe('valid');
    expect(winner.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'duplicate_id', severity: 'warning' }),
    );
    expect(winner.diagnostics[0]?.message).toContain(loser.manifestPath);
    expect(loser.status).toBe('shadowed');
    expect(loser.diagnostics[0]?.message).toContain(winner.manifestPath);
    expect(result.order.load.map((c) => c.manifest.metadata.version)).toEqual(['2.0.0']);
  });

  it('keeps an invalid override in front instead of silently falling back to another copy', () => {
    const first = tempDir();
    const second = tempDir();
    writePlugin(first, 'broken', { id: 'shared', api_version: '9.0.0' });
    writePlugin(second, 'good', { id: 'shared' });
    const result = scan([first, second]);
    expect(result.byDir('broken').status).toBe('invalid');
    expect(result.byDir('good').status).toBe('shadowed');
    expect(result.order.load).toHaveLength(0);
  });

  it('follows a symlinked plugin directory and reports the same directory only once', () => {
    const root = tempDir();
    const elsewhere = tempDir();
    writePlugin(elsewhere, 'dev', { id: 'dev' });
    symlinkSync(join(elsewhere, 'dev'), join(root, 'dev-link'));
    symlinkSync(join(elsewhere, 'dev'), join(root, 'dev-link-2'));
    const result = scan([root]);
    expect(result.candidates).toHaveLength(1);
    expect(result.candidates[0]?.status).toBe('valid');
    expect(result.candidates[0]?.inventory?.root).toBe(join(elsewhere, 'dev'));
  });

  it('reports missing, duplicate and non-directory search paths without failing', () => {
    const root = tempDir();
    writeFileSync(join(root, 'file'), 'x');
    const result = discoverPlugins({ searchPaths: [join(root, 'nope'), root, root, join(root, 'file')] });
    expect(result.searchPaths.map((s) => s.status)).toEqual([
      'missing',
      'searched',
      'duplicate',
      'not_directory',
    ]);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['search_path_unreadable']);
  });

  it('detects the type from entry_point, then from plugin.wasm or the platform library', () => {
    const root = tempDir();
    writePlugin(root, 'w', { id: 'w' });
    writePlugin(root, 'n', { id: 'n' }, { 'plugin.so': 'ELF' });
    writePlugin(root, 'lib', { id: 'lib' }, { 'libplugin.so': 'ELF' });
    writePlugin(root, 'e', { id: 'e', entry_point: 'build/out.wasm' }, { 'build/out.wasm': EMPTY_WASM });
    writePlugin(
      root,
      'x',
      { id: 'x', plugin_type: 'native', entry_point: 'bin/custom.so' },
      { 'bin/custom.so': 'ELF' },
    );
    const result = scan([root]);
    const summary = (d: string) => [
      result.byDir(d).pluginType,
      result.byDir(d).entryPoint?.slice(root.length),
    ];
    expect(summary('w')).toEqual(['wasm', '/w/plugin.wasm']);
    expect(summary('n')).toEqual(['native', '/n/plugin.so']);
    expect(summary('lib')).toEqual(['native', '/lib/libplugin.so']);
    expect(summary('e')).toEqual(['wasm', '/e/build/out.wasm']);
    expect(summary('x')).toEqual(['native', '/x/bin/custom.so']);
  });

  it('accepts an entry point that is a symlink inside the plugin directory', () => {
    const root = tempDir();
    const dir = writePlugin(
      root,
      'p',
      { id: 'p', entry_point: 'current.wasm' },
      { 'v2/plugin.wasm': EMPTY_WASM },
    );
    symlinkSync('v2/plugin.wasm', join(dir, 'current.wasm'));
    const result = scan([root]);
    expect(result.byDir('p').status).toBe('valid');
    expect(result.byDir('p').entryPoint).toBe(join(dir, 'v2/plugin.wasm'));
  });

  it('searches the user and the system directory by default, in that order', () => {
    expect(defaultSearchPaths('/home/u')).toEqual(['/home/u/.reed/plugins', '/usr/local/share/reed/plugins']);
  });

  it('reads a plugin directory whose entries are unreadable without crashing', () => {
    const root = tempDir();
    mkdirSync(join(root, 'p'));
    writeFileSync(join(root, 'p', 'plugin.toml'), Buffer.alloc(0));
    const candidate = scan([root]).byDir('p');
    expect(candidate.status).toBe('invalid');
    expect(candidate.diagnostics.map((d) => d.code)).toContain('manifest_missing_field');
  });

  it('lists plugin.toml by the file it reads: a regular file, a FIFO, a directory, a link, one over the cap', () => {
    const root = tempDir();
    const text = manifestToml({ id: 'plain' });
    writePlugin(root, 'plain', { id: 'plain' });
    for (const name of ['fifo', 'dir', 'link', 'big']) mkdirSync(join(root, name));
    execFileSync('mkfifo', [join(root, 'fifo', 'plugin.toml')]);
    mkdirSync(join(root, 'dir', 'plugin.toml'));
    writeFileSync(join(root, 'link', 'real.toml'), manifestToml({ id: 'link' }));
    symlinkSync('real.toml', join(root, 'link', 'plugin.toml'));
    writeFileSync(join(root, 'big', 'plugin.toml'), `${manifestToml({ id: 'big' })}# ${'x'.repeat(300)}\n`);
    const result = discoverPlugins({
      searchPaths: [root],
      fileLimits: { maxManifestBytes: text.length + 200 },
    });
    const at = (dir: string) => result.candidates.find((c) => c.pluginDir === join(root, dir));
    const manifestEntry = (dir: string) => at(dir)?.inventory?.files.find((f) => f.path === 'plugin.toml');
    expect(manifestEntry('plain')).toMatchObject({ kind: 'file', size: Buffer.byteLength(text) });
    expect(at('plain')?.manifestSource).toEqual({
      path: 'plugin.toml',
      sha256: createHash('sha256').update(text).digest('hex'),
    });
    expect(manifestEntry('fifo')?.kind).toBe('special');
    expect(at('fifo')?.diagnostics[0]).toMatchObject({
      code: 'manifest_unreadable',
      message: 'cannot read manifest: not a regular file',
    });
    expect(manifestEntry('dir')?.kind).toBe('directory');
    expect(at('dir')?.diagnostics[0]).toMatchObject({ code: 'manifest_unreadable' });
    expect(manifestEntry('link')).toMatchObject({ kind: 'symlink', linkInside: true });
    expect(at('link')?.manifestSource?.path).toBe('real.toml');
    expect(at('link')?.id).toBe('link');
    expect(at('big')?.diagnostics[0]).toMatchObject({ code: 'manifest_too_large' });
    expect(manifestEntry('big')?.kind).toBe('file');
  });
  it('judges names by their bytes once one is not clean UTF-8: a name holding U+FFFD is listed, one not UTF-8 is not', () => {
    const root = tempDir();
    // A plugin directory whose names all decode cleanly (listed as strings), one with a name that holds U+FFFD
    // itself (valid UTF-8: listed as bytes, then kept), and one with a name that is not UTF-8 (refused).
    writePlugin(root, 'clean', { id: 'clean' });
    writePlugin(root, 'replacement', { id: 'replacement' });
    writeFileSync(join(root, 'replacement', 'a\uFFFDb.txt'), 'x');
    writePlugin(root, 'latin1', { id: 'latin1' });
    writeFileSync(Buffer.concat([Buffer.from(join(root, 'latin1', 'f')), Buffer.from([0xff, 0x2e])]), 'x');
    const result = discoverPlugins({ searchPaths: [root] });
    const byId = (id: string) => result.candidates.find((c) => c.id === id);
    expect(byId('clean')?.status).toBe('valid');
    expect(byId('clean')?.inventory?.files.map((f) => f.path)).toEqual(['plugin.toml', 'plugin.wasm']);
    expect(byId('replacement')?.status).toBe('valid');
    expect(byId('replacement')?.inventory?.files.map((f) => f.path)).toEqual([
      'a\uFFFDb.txt',
      'plugin.toml',
      'plugin.wasm',
    ]);
    expect(byId('replacement')?.inventory?.unlisted).toEqual([]);
    expect(byId('latin1')?.status).toBe('invalid');
    expect(byId('latin1')?.inventory?.unlisted).toEqual([{ path: 'f\u00ff.', reason: 'is not UTF-8' }]);
    expect(byId('latin1')?.inventory?.files.map((f) => f.path)).toEqual(['plugin.toml', 'plugin.wasm']);
    expect(byId('latin1')?.diagnostics.map((d) => d.code)).toContain('file_name_invalid');
  });
});
