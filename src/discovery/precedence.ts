import type { PluginCandidate } from './candidate.js';

/**
 * Settles an id found more than once (discover.ts says why this way): the copies in the earliest search path win,
 * later ones are `shadowed`, and two in that same path are both `invalid`.
 */
export function applyPrecedence(candidates: PluginCandidate[]): void {
  const byId = new Map<string, PluginCandidate[]>();
  for (const c of candidates) {
    if (c.id === undefined) continue;
    const group = byId.get(c.id);
    if (group === undefined) byId.set(c.id, [c]);
    else group.push(c);
  }
  for (const [id, group] of byId) {
    if (group.length < 2) continue;
    // Candidates were pushed in search-path order, so the group is already in precedence order.
    const firstIndex = group[0]?.searchPathIndex;
    const top = group.filter((c) => c.searchPathIndex === firstIndex);
    const rest = group.filter((c) => c.searchPathIndex !== firstIndex);
    const topPaths = top.map((c) => c.manifestPath).join(', ');
    if (top.length > 1) {
      for (const c of top) {
        c.status = 'invalid';
        c.diagnostics.push({
          code: 'duplicate_id',
          severity: 'error',
          message: `plugin id "${id}" is used by ${top.length} plugins in the same search path (${topPaths}); none is loaded until the ids are unique`,
          file: c.manifestPath,
          field: 'metadata.id',
          pluginId: id,
        });
      }
    } else if (top[0] !== undefined) {
      top[0].diagnostics.push({
        code: 'duplicate_id',
        severity: 'warning',
        message: `plugin "${id}" shadows other copies in later search paths: ${rest.map((c) => c.manifestPath).join(', ')}`,
        file: top[0].manifestPath,
        field: 'metadata.id',
        pluginId: id,
      });
    }
    for (const c of rest) {
      c.status = 'shadowed';
      c.diagnostics.push({
        code: 'duplicate_id',
        severity: 'warning',
        message: `plugin "${id}" is shadowed by ${topPaths}, which comes earlier in the search paths`,
        file: c.manifestPath,
        field: 'metadata.id',
        pluginId: id,
      });
    }
  }
}

/** The order of discovery's candidates: (priority, name, id), broken manifests without an id last. */
export function compareCandidates(a: PluginCandidate, b: PluginCandidate): number {
  const am = a.manifest?.metadata;
  const bm = b.manifest?.metadata;
  if (am === undefined || bm === undefined) {
    if (am !== bm) return am === undefined ? 1 : -1;
    return compareStrings(a.manifestPath, b.manifestPath);
  }
  return (
    am.priority - bm.priority ||
    compareStrings(am.name, bm.name) ||
    compareStrings(am.id, bm.id) ||
    a.searchPathIndex - b.searchPathIndex ||
    compareStrings(a.manifestPath, b.manifestPath)
  );
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
