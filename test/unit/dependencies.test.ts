import { describe, expect, it } from 'vitest';
import { findCycles, type NeedsEdges, topologicalOrder } from '../../src/dependencies/dependency-graph.js';
import type { ParsedCandidate } from '../../src/discovery/candidate.js';
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

  it('orders as a list kept sorted by (priority, name, id) would, equal plugins in the order they became ready', () => {
    // The reference: Kahn's algorithm with the ready list sorted, each newly ready plugin after its equals.
    const key = (c: ParsedCandidate) => c.manifest.metadata;
    const compare = (a: ParsedCandidate, b: ParsedCandidate) =>
      key(a).priority - key(b).priority ||
      (key(a).name < key(b).name ? -1 : key(a).name > key(b).name ? 1 : 0) ||
      (key(a).id < key(b).id ? -1 : key(a).id > key(b).id ? 1 : 0);
    const reference = (nodes: ParsedCandidate[], edges: NeedsEdges) => {
      const waiting = new Map(
        nodes.map((n) => [n, [...(edges.get(n) ?? [])].filter((d) => nodes.includes(d)).length]),
      );
      const ready = nodes.filter((n) => waiting.get(n) === 0).sort(compare);
      const order: ParsedCandidate[] = [];
      while (ready.length > 0) {
        const node = ready.shift() as ParsedCandidate;
        order.push(node);
        for (const other of nodes) {
          if (!edges.get(other)?.has(node)) continue;
          const left = (waiting.get(other) ?? 0) - 1;
          waiting.set(other, left);
          if (left !== 0) continue;
          let at = ready.length;
          while (at > 0 && compare(ready[at - 1] as ParsedCandidate, other) > 0) at--;
          ready.splice(at, 0, other);
        }
      }
      return order;
    };
    let seed = 7;
    const random = (below: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % below;
    };
    for (let round = 0; round < 200; round++) {
      const count = 1 + random(40);
      // Few distinct keys, so that many plugins are equal (the same priority, name and id).
      const nodes = Array.from(
        { length: count },
        (_, i) =>
          ({
            id: `p${random(6)}`,
            manifest: { metadata: { id: `p${random(3)}`, name: `n${random(3)}`, priority: random(3) } },
            tag: i,
          }) as unknown as ParsedCandidate,
      );
      const edges: NeedsEdges = new Map();
      // Edges only to earlier nodes (a DAG), and some to plugins outside the set.
      nodes.forEach((node, i) => {
        const needs = new Set<ParsedCandidate>();
        for (let k = random(4); k > 0 && i > 0; k--) needs.add(nodes[random(i)] as ParsedCandidate);
        if (random(5) === 0)
          needs.add({ manifest: { metadata: { id: 'x', name: 'x', priority: 0 } } } as ParsedCandidate);
        if (needs.size > 0) edges.set(node, needs);
      });
      const given = [...nodes].sort(() => random(3) - 1);
      expect(topologicalOrder(given, edges)).toEqual(reference(given, edges));
      expect(findCycles(given, edges)).toEqual([]);
    }
  });
});
