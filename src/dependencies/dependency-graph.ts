// The graph algorithms under dependency resolution: cycles (Tarjan, iterative) and the load order (Kahn, ties by
// priority, name, id). Nodes are candidates; an edge runs from a plugin to what it needs first.
import type { ParsedCandidate } from '../discovery/candidate.js';

export type NeedsEdges = Map<ParsedCandidate, Set<ParsedCandidate>>;

/** Tarjan's strongly connected components; each component of two or more is reported as one concrete cycle. */
export function findCycles(nodes: ParsedCandidate[], edges: NeedsEdges): ParsedCandidate[][] {
  const inSet = new Set(nodes);
  const index = new Map<ParsedCandidate, number>();
  const low = new Map<ParsedCandidate, number>();
  const onStack = new Set<ParsedCandidate>();
  const stack: ParsedCandidate[] = [];
  const cycles: ParsedCandidate[][] = [];
  let counter = 0;

  // Iterative, so that a long dependency chain cannot overflow the call stack.
  for (const start of nodes) {
    if (index.has(start)) continue;
    const work: { node: ParsedCandidate; next: Iterator<ParsedCandidate> }[] = [];
    const visit = (node: ParsedCandidate) => {
      index.set(node, counter);
      low.set(node, counter);
      counter++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: (edges.get(node) ?? new Set()).values() });
    };
    visit(start);
    while (work.length > 0) {
      const frame = work[work.length - 1] as (typeof work)[number];
      const step = frame.next.next();
      if (!step.done) {
        const dep = step.value;
        if (!inSet.has(dep)) continue;
        if (!index.has(dep)) visit(dep);
        else if (onStack.has(dep))
          low.set(frame.node, Math.min(low.get(frame.node) ?? 0, index.get(dep) ?? 0));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined)
        low.set(parent.node, Math.min(low.get(parent.node) ?? 0, low.get(frame.node) ?? 0));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: ParsedCandidate[] = [];
        let member: ParsedCandidate | undefined;
        do {
          member = stack.pop();
          if (member === undefined) break;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        if (component.length > 1) cycles.push(cyclePath(component, edges));
      }
    }
  }
  return cycles;
}

/** A concrete cycle through a strongly connected component, starting from its smallest id. */
function cyclePath(component: ParsedCandidate[], edges: NeedsEdges): ParsedCandidate[] {
  const members = new Set(component);
  const start = [...component].sort((a, b) => (a.id < b.id ? -1 : 1))[0] as ParsedCandidate;
  // Breadth-first from start back to start: the shortest cycle through it.
  const previous = new Map<ParsedCandidate, ParsedCandidate>();
  const queue: ParsedCandidate[] = [start];
  while (queue.length > 0) {
    const node = queue.shift() as ParsedCandidate;
    for (const next of edges.get(node) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [node];
        let at = node;
        while (at !== start) {
          at = previous.get(at) as ParsedCandidate;
          path.push(at);
        }
        // path runs node..start backwards along "needs" edges; read forwards it is start -> ... -> node.
        return path.reverse();
      }
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return component;
}

export function topologicalOrder(nodes: ParsedCandidate[], edges: NeedsEdges): ParsedCandidate[] {
  const inSet = new Set(nodes);
  const waiting = new Map<ParsedCandidate, number>();
  const dependents = new Map<ParsedCandidate, ParsedCandidate[]>();
  for (const node of nodes) {
    let count = 0;
    for (const dep of edges.get(node) ?? []) {
      if (!inSet.has(dep)) continue;
      count++;
      const list = dependents.get(dep);
      if (list === undefined) dependents.set(dep, [node]);
      else list.push(node);
    }
    waiting.set(node, count);
  }
  const ready = nodes.filter((n) => waiting.get(n) === 0).sort(compareForLoad);
  const order: ParsedCandidate[] = [];
  while (ready.length > 0) {
    const node = ready.shift() as ParsedCandidate;
    order.push(node);
    for (const dependent of dependents.get(node) ?? []) {
      const left = (waiting.get(dependent) ?? 0) - 1;
      waiting.set(dependent, left);
      if (left === 0) insertSorted(ready, dependent);
    }
  }
  return order;
}

function compareForLoad(a: ParsedCandidate, b: ParsedCandidate): number {
  const am = a.manifest.metadata;
  const bm = b.manifest.metadata;
  return (
    am.priority - bm.priority ||
    (am.name < bm.name ? -1 : am.name > bm.name ? 1 : 0) ||
    (am.id < bm.id ? -1 : am.id > bm.id ? 1 : 0)
  );
}

function insertSorted(list: ParsedCandidate[], item: ParsedCandidate): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareForLoad(list[mid] as ParsedCandidate, item) <= 0) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, item);
}
