import { describe, expect, it } from 'vitest';
import { tempDir, writePlugin } from '../helpers/plugin-tree.js';
import { scan } from '../helpers/scan.js';

const dep = (id: string, version = '*', optional = false) => ({ id, version, optional });
const needs = (...deps: ReturnType<typeof dep>[]) => ({ requirements: { dependencies: deps } });

describe('dependency order', () => {
  it('loads dependencies first and shuts down in reverse', () => {
    const root = tempDir();
    writePlugin(root, 'app', { id: 'app', priority: 0, ...needs(dep('db', '^1.2.0'), dep('log')) });
    writePlugin(root, 'db', { id: 'db', version: '1.4.0', ...needs(dep('log')) });
    writePlugin(root, 'log', { id: 'log', priority: 500 });
    writePlugin(root, 'other', { id: 'other', priority: 1 });
    const { order } = scan([root]);
    expect(order.load.map((c) => c.id)).toEqual(['other', 'log', 'db', 'app']);
    expect(order.shutdown.map((c) => c.id)).toEqual(['app', 'db', 'log', 'other']);
  });

  it('names the whole cycle, for every plugin in it, and invalidates what depends on it', () => {
    const root = tempDir();
    writePlugin(root, 'a', { id: 'a', ...needs(dep('b')) });
    writePlugin(root, 'b', { id: 'b', ...needs(dep('c')) });
    writePlugin(root, 'c', { id: 'c', ...needs(dep('a')) });
    writePlugin(root, 'user', { id: 'user', ...needs(dep('b')) });
    writePlugin(root, 'free', { id: 'free' });
    const result = scan([root]);
    for (const id of ['a', 'b', 'c']) {
      const cycle = result.byDir(id).diagnostics.find((d) => d.code === 'dependency_cycle');
      expect(cycle?.message).toContain('a -> b -> c -> a');
    }
    expect(result.codes('user')).toEqual(['dependency_invalid']);
    expect(result.order.load.map((c) => c.id)).toEqual(['free']);
  });

  it('treats optional dependencies as ordering hints that only warn when unusable', () => {
    const root = tempDir();
    writePlugin(root, 'p', {
      id: 'p',
      priority: 0,
      ...needs(
        dep('cache', '*', true),
        dep('ghost', '*', true),
        dep('old', '^2', true),
        dep('bad', '*', true),
      ),
    });
    writePlugin(root, 'cache', { id: 'cache', priority: 50 });
    writePlugin(root, 'old', { id: 'old', version: '1.0.0' });
    writePlugin(root, 'bad', { id: 'bad', api_version: '0.1.0' });
    const result = scan([root]);
    const p = result.byDir('p');
    expect(p.status).toBe('valid');
    expect(p.diagnostics.map((d) => [d.code, d.severity])).toEqual([
      ['dependency_optional_missing', 'warning'],
      ['dependency_version_mismatch', 'warning'],
      ['dependency_invalid', 'warning'],
    ]);
    expect(result.order.load.map((c) => c.id)).toEqual(['cache', 'p', 'old']);
  });

  it('cascades invalidity down a chain', () => {
    const root = tempDir();
    writePlugin(root, 'base', { id: 'base', api_version: '3.0.0' });
    writePlugin(root, 'mid', { id: 'mid', ...needs(dep('base')) });
    writePlugin(root, 'top', { id: 'top', ...needs(dep('mid')) });
    const result = scan([root]);
    expect(result.byDir('top').status).toBe('invalid');
    expect(result.codes('top')).toEqual(['dependency_invalid']);
  });

  it('satisfies a dependency with a plugin already loaded in the host', () => {
    const root = tempDir();
    writePlugin(root, 'p', { id: 'p', ...needs(dep('core', '^1')) });
    const ok = scan([root], { context: { loadedPlugins: [{ id: 'core', version: '1.3.0' }] } });
    expect(ok.byDir('p').status).toBe('valid');
    const old = scan([root], { context: { loadedPlugins: [{ id: 'core', version: '0.9.0' }] } });
    expect(old.codes('p')).toEqual(['dependency_version_mismatch']);
  });

  it('orders a chain of 3,000 plugins without overflowing the stack', () => {
    const root = tempDir();
    const n = 3_000;
    for (let i = 0; i < n; i++)
      writePlugin(root, `p${i}`, { id: `p${i}`, ...(i > 0 ? needs(dep(`p${i - 1}`)) : {}) });
    writePlugin(root, 'loop', { id: 'loop', ...needs(dep(`p${n - 1}`)) });
    const result = scan([root]);
    expect(result.order.load).toHaveLength(n + 1);
    expect(result.order.load[0]?.id).toBe('p0');
    expect(result.order.load.at(-1)?.id).toBe('loop');
  });
});
