import semver from 'semver';
import type { Diagnostic } from '../diagnostics.js';
import type { ParsedCandidate, PluginCandidate } from '../discovery/candidate.js';
import { isParsed } from '../discovery/candidate.js';
import type { PluginDependency } from '../manifest/types.js';
import { findCycles, type NeedsEdges, topologicalOrder } from './dependency-graph.js';

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
  const known: KnownPlugins = {
    byId: new Map<string, ParsedCandidate>(active.map((c) => [c.id, c])),
    loaded: new Map(loadedPlugins.map((p) => [p.id, p.version])),
    // Plugins whose manifest did not even parse still name an id when they can; depending on one is "invalid".
    broken: new Set(
      candidates
        .filter((c) => !isParsed(c) && c.id !== undefined && c.status !== 'shadowed')
        .map((c) => c.id),
    ),
  };

  // 1. presence and version of each dependency; collect ordering edges to candidates.
  // A plugin without dependencies has no entry (every reader takes none as no edges).
  const edges: NeedsEdges = new Map();
  for (const c of active) {
    if (c.manifest.requirements.dependencies.length === 0) continue;
    const needs = checkDependencies(c, known);
    if (needs.size > 0) edges.set(c, needs);
  }
  // 2. invalidity flows from a dependency to its dependents.
  cascade(active, edges);
  // 3. cycles among the remaining valid plugins, and what depended on them.
  reportCycles(
    active.filter((c) => c.status === 'valid'),
    edges,
  );
  cascade(active, edges);
  // 4. topological order, ties by (priority, name, id).
  const load = topologicalOrder(
    active.filter((c) => c.status === 'valid'),
    edges,
  );
  return { load, shutdown: [...load].reverse() };
}

interface KnownPlugins {
  byId: Map<string, ParsedCandidate>;
  loaded: Map<string, string>;
  broken: Set<string | undefined>;
}

function report(c: ParsedCandidate, d: Omit<Diagnostic, 'file' | 'pluginId'>): void {
  c.diagnostics.push({ ...d, file: c.manifestPath, pluginId: c.id });
  if (d.severity === 'error') c.status = 'invalid';
}

/** Step 1 for one plugin: reports each unusable dependency; returns the candidates it must load after. */
function checkDependencies(c: ParsedCandidate, known: KnownPlugins): Set<ParsedCandidate> {
  const needs = new Set<ParsedCandidate>();
  const seen = new Set<string>();
  for (const [i, dep] of c.manifest.requirements.dependencies.entries()) {
    const field = `requirements.dependencies[${i}]`;
    if (dep.id === c.id) {
      const message = `plugin "${c.id}" lists itself as a dependency`;
      report(c, { code: 'dependency_self', severity: 'error', message, field: `${field}.id` });
      continue;
    }
    if (seen.has(dep.id)) {
      const message = `dependency "${dep.id}" is listed more than once`;
      report(c, { code: 'dependency_duplicate', severity: 'error', message, field: `${field}.id` });
      continue;
    }
    seen.add(dep.id);
    const problem = dependencyProblem(c, dep, known);
    if (problem !== undefined) {
      report(c, { ...problem, field: `${field}.${problem.field}` });
      continue;
    }
    const target = known.byId.get(dep.id);
    if (target !== undefined && !known.loaded.has(dep.id)) needs.add(target);
  }
  return needs;
}

/** Why `dep` cannot be used (a warning when it is optional), or undefined when it can. */
function dependencyProblem(
  c: ParsedCandidate,
  dep: PluginDependency,
  known: KnownPlugins,
): Omit<Diagnostic, 'file' | 'pluginId'> | undefined {
  const severity = dep.optional ? 'warning' : 'error';
  const kind = dep.optional ? 'optional dependency' : 'dependency';
  const version = known.byId.get(dep.id)?.manifest.metadata.version ?? known.loaded.get(dep.id);
  if (version === undefined && known.broken.has(dep.id)) {
    return {
      code: 'dependency_invalid',
      severity,
      message: `${kind} "${dep.id}" of plugin "${c.id}" is present but its manifest is invalid${dep.optional ? '; continuing without it' : ''}`,
      field: 'id',
    };
  }
  if (version === undefined) {
    return {
      code: dep.optional ? 'dependency_optional_missing' : 'dependency_missing',
      severity,
      message: `${kind} "${dep.id}" (${dep.version}) of plugin "${c.id}" is not available${dep.optional ? '; continuing without it' : ''}`,
      field: 'id',
    };
  }
  if (!semver.satisfies(version, dep.version)) {
    return {
      code: 'dependency_version_mismatch',
      severity,
      message: `${kind} "${dep.id}" is present in version ${version}, outside the range "${dep.version}" that plugin "${c.id}" needs${dep.optional ? '; ignored' : ''}`,
      field: 'version',
    };
  }
  return undefined;
}

/** Step 2: a plugin whose required dependency is invalid becomes invalid, to a fixpoint; optional ones only warn. */
function cascade(active: ParsedCandidate[], edges: NeedsEdges): void {
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
}

/** Step 3: every member of a cycle gets an error naming the whole cycle. */
function reportCycles(valid: ParsedCandidate[], edges: NeedsEdges): void {
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
}
