// The graph algorithms under dependency resolution: cycles (Tarjan, iterative) and the load order (Kahn, ties by
// priority, name, id). Nodes are candidates; an edge runs from a plugin to what it needs first.
import type { ParsedCandidate } from '../discovery/candidate.js';

export type NeedsEdges = Map<ParsedCandidate, Set<ParsedCandidate>>;

const NO_EDGES: ReadonlySet<ParsedCandidate> = new Set();

/** Tarjan's strongly connected components; each component of two or more is reported as one concrete cycle. */
export function findCycles(nodes: ParsedCandidate[], edges: NeedsEdges): ParsedCandidate[][] {
  const inSet = new Set(nodes);
  const index = new Map<ParsedCandidate, number>();
  const low = new Map<ParsedCandidate, number>();
  const onStack = new Set<ParsedCandidate>();
  const stack: ParsedCandidate[] = [];
  const cycles: ParsedCandidate[][] = [];
  let counter = 0;

  // Iterative, so that a long dependency chain cannot overflow the call stack. A node that needs nothing is a
  // component of its own, and starting from it changes no other component (one reached from another start is
  // visited then): only nodes with edges
  // start a search (most plugins have no dependencies; each start cost a closure and a frame).
  for (const start of nodes) {
    if (index.has(start) || (edges.get(start)?.size ?? 0) === 0) continue;
    const work: { node: ParsedCandidate; next: Iterator<ParsedCandidate> }[] = [];
    const visit = (node: ParsedCandidate) => {
      index.set(node, counter);
      low.set(node, counter);
      counter++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: (edges.get(node) ?? NO_EDGES).values() });
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

/**
 * Kahn's algorithm: among the plugins whose dependencies are all ordered, the least by (priority, name, id) comes
 * next; of two equal ones, the one that became ready first. The ready set is a binary heap of integer keys (each
 * node's place in one sort of all nodes, then the order it became ready in), not a sorted array kept by splicing:
 * with 10,000 plugins the array's shift and splice moved the whole list every time (~29 of the ~90 ms dependency
 * resolution took in bench/discovery).
 */
export function topologicalOrder(nodes: ParsedCandidate[], edges: NeedsEdges): ParsedCandidate[] {
  const n = nodes.length;
  // Nodes usually arrive in discovery's order, which already sorts by these keys: the sort is then one pass.
  const sorted = nodes.slice().sort(compareForLoad);
  const position = new Map<ParsedCandidate, number>();
  // rank: equal nodes (by compareForLoad) share one, so that the order they became ready in decides between them.
  // Equal nodes have equal ids: the ids' comparison (by hash, once Maps have hashed them) rules out nearly all pairs.
  const rank = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const node = sorted[i] as ParsedCandidate;
    position.set(node, i);
    const before = sorted[i - 1];
    rank[i] =
      before !== undefined &&
      before.manifest.metadata.id === node.manifest.metadata.id &&
      compareForLoad(before, node) === 0
        ? (rank[i - 1] as number)
        : i;
  }
  const waiting = new Int32Array(n);
  const dependents: (number[] | undefined)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const needs = edges.get(sorted[i] as ParsedCandidate);
    if (needs === undefined) continue;
    for (const dep of needs) {
      const d = position.get(dep);
      if (d === undefined) continue;
      waiting[i] = (waiting[i] as number) + 1;
      const list = dependents[d];
      if (list === undefined) dependents[d] = [i];
      else list.push(i);
    }
  }
  // A ready node's key: its rank, then the sequence number of its becoming ready (those ready at the start in sorted
  // order); `readyAt` maps the sequence number back to the node. Each node becomes ready once: sequence < n + 1.
  const span = n + 1;
  const heap = new Float64Array(n);
  let size = 0;
  let sequence = 0;
  const push = (i: number) => {
    const key = (rank[i] as number) * span + sequence++;
    let at = size++;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if ((heap[parent] as number) <= key) break;
      heap[at] = heap[parent] as number;
      at = parent;
    }
    heap[at] = key;
  };
  const pop = (): number => {
    const top = heap[0] as number;
    const last = heap[--size] as number;
    let at = 0;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= size) break;
      if (child + 1 < size && (heap[child + 1] as number) < (heap[child] as number)) child++;
      if ((heap[child] as number) >= last) break;
      heap[at] = heap[child] as number;
      at = child;
    }
    heap[at] = last;
    return top;
  };
  const readyAt = new Int32Array(n);
  const ready = (i: number) => {
    readyAt[sequence] = i;
    push(i);
  };
  for (let i = 0; i < n; i++) if (waiting[i] === 0) ready(i);
  const order: ParsedCandidate[] = [];
  while (size > 0) {
    const i = readyAt[pop() % span] as number;
    order.push(sorted[i] as ParsedCandidate);
    const list = dependents[i];
    if (list === undefined) continue;
    for (const dependent of list) {
      const left = (waiting[dependent] as number) - 1;
      waiting[dependent] = left;
      if (left === 0) ready(dependent);
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
