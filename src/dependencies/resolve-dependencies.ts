import semver from 'semver';
import type { Diagnostic } from '../diagnostics.js';
import type { ParsedCandidate, PluginCandidate } from '../discovery/candidate.js';
import { isParsed } from '../discovery/candidate.js';

/** A plugin already running in the host: it satisfies dependencies but is not ordered again. */
export interface LoadedPlugin {
  id: string;
  version: string;
}

export interface LoadOrder {
  /** Valid plugins, each after everything it depends on; ties by (priority, name, id). */
  load: ParsedCandidate[];
  /** `load` reversed: dependents deactivate before what they depend on. */
  shutdown: ParsedCandidate[];
}

/**
 * The seed's DependencyRule and the load order, over the whole set at once:
 * 1. each dependency must exist (among valid candidates or loaded plugins) in a version inside its range;
 *    optional ones only warn, and an unusable optional dependency is ignored (no ordering edge);
 * 2. a plugin whose required dependency is invalid becomes invalid itself (`dependency_invalid`), to a fixpoint;
 * 3. cycles among what remains are errors naming the whole cycle, for every member;
 * 4. what remains is ordered topologically.
 * Mutates candidates' diagnostics and status.
 */
export function resolveDependencies(
  candidates: PluginCandidate[],
  loadedPlugins: LoadedPlugin[] = [],
): LoadOrder {
  const active = candidates.filter((c): c is ParsedCandidate => isParsed(c) && c.status !== 'shadowed');
  const byId = new Map<string, ParsedCandidate>(active.map((c) => [c.id, c]));
  const loaded = new Map(loadedPlugins.map((p) => [p.id, p.version]));
  // Plugins whose manifest did not even parse still name an id when they can; depending on one is "invalid".
  const broken = new Set(
    candidates.filter((c) => !isParsed(c) && c.id !== undefined && c.status !== 'shadowed').map((c) => c.id),
  );
  const report = (c: ParsedCandidate, d: Omit<Diagnostic, 'file' | 'pluginId'>) => {
    c.diagnostics.push({ ...d, file: c.manifestPath, pluginId: c.id });
    if (d.severity === 'error') c.status = 'invalid';
  };

  // 1. presence and version of each dependency; collect ordering edges to candidates.
  const edges = new Map<ParsedCandidate, Set<ParsedCandidate>>(); // plugin -> what it needs first
  for (const c of active) {
    const needs = new Set<ParsedCandidate>();
    edges.set(c, needs);
    const seen = new Set<string>();
    c.manifest.requirements.dependencies.forEach((dep, i) => {
      const field = `requirements.dependencies[${i}]`;
      const severity = dep.optional ? 'warning' : 'error';
      const kind = dep.optional ? 'optional dependency' : 'dependency';
      if (dep.id === c.id) {
        report(c, {
          code: 'dependency_self',
          severity: 'error',
          message: `plugin "${c.id}" lists itself as a dependency`,
          field: `${field}.id`,
        });
        return;
      }
      if (seen.has(dep.id)) {
        report(c, {
          code: 'dependency_duplicate',
          severity: 'error',
          message: `dependency "${dep.id}" is listed more than once`,
          field: `${field}.id`,
        });
        return;
      }
      seen.add(dep.id);
      const target = byId.get(dep.id);
      const version = target?.manifest.metadata.version ?? loaded.get(dep.id);
      if (version === undefined && broken.has(dep.id)) {
        report(c, {
          code: 'dependency_invalid',
          severity,
          message: `${kind} "${dep.id}" of plugin "${c.id}" is present but its manifest is invalid${dep.optional ? '; continuing without it' : ''}`,
          field: `${field}.id`,
        });
        return;
      }
      if (version === undefined) {
        report(c, {
          code: dep.optional ? 'dependency_optional_missing' : 'dependency_missing',
          severity,
          message: `${kind} "${dep.id}" (${dep.version}) of plugin "${c.id}" is not available${dep.optional ? '; continuing without it' : ''}`,
          field: `${field}.id`,
        });
        return;
      }
      if (!semver.satisfies(version, dep.version)) {
        report(c, {
          code: 'dependency_version_mismatch',
          severity,
          message: `${kind} "${dep.id}" is present in version ${version}, outside the range "${dep.version}" that plugin "${c.id}" needs${dep.optional ? '; ignored' : ''}`,
          field: `${field}.version`,
        });
        return;
      }
      if (target !== undefined && !loaded.has(dep.id)) needs.add(target);
    });
  }

  // 2. invalidity flows from a dependency to its dependents.
  const cascade = () => {
    let changed = true;
    while (changed) {
      changed = false;
      for (const c of active) {
        if (c.status !== 'valid') continue;
        for (const dep of edges.get(c) ?? []) {
          if (dep.status === 'valid') continue;
          const spec = c.manifest.requirements.dependencies.find((d) => d.id === dep.id);
          const optional = spec?.optional === true;
          edges.get(c)?.delete(dep);
          report(c, {
            code: 'dependency_invalid',
            severity: optional ? 'warning' : 'error',
            message: `${optional ? 'optional dependency' : 'dependency'} "${dep.id}" of plugin "${c.id}" is invalid itself${optional ? '; continuing without it' : ''}`,
            field: 'requirements.dependencies',
          });
          if (!optional) {
            changed = true;
            break;
          }
        }
      }
    }
  };
  cascade();

  // 3. cycles among the remaining valid plugins.
  const valid = active.filter((c) => c.status === 'valid');
  for (const cycle of findCycles(valid, edges)) {
    const names = [...cycle, cycle[0]].map((c) => c?.id).join(' -> ');
    for (const c of cycle) {
      report(c, {
        code: 'dependency_cycle',
        severity: 'error',
        message: `dependency cycle: ${names}; break it by removing or making optional one of these dependencies`,
        field: 'requirements.dependencies',
      });
    }
  }
  cascade();

  // 4. topological order, ties by (priority, name, id).
  const load = topologicalOrder(
    active.filter((c) => c.status === 'valid'),
    edges,
  );
  return { load, shutdown: [...load].reverse() };
}

/** Tarjan's strongly connected components; each component of two or more is reported as one concrete cycle. */
function findCycles(
  nodes: ParsedCandidate[],
  edges: Map<ParsedCandidate, Set<ParsedCandidate>>,
): ParsedCandidate[][] {
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
function cyclePath(
  component: ParsedCandidate[],
  edges: Map<ParsedCandidate, Set<ParsedCandidate>>,
): ParsedCandidate[] {
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

function topologicalOrder(
  nodes: ParsedCandidate[],
  edges: Map<ParsedCandidate, Set<ParsedCandidate>>,
): ParsedCandidate[] {
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
