import type { PluginCandidate } from '../discovery/candidate.js';
import type { SearchPathReport } from '../discovery/discover.js';
import { escapeUnprintable } from '../safe-text.js';

/** A plain text table: columns padded to their widest cell; cells escaped (a manifest chose some of them). */
export function table(header: string[], cells: string[][]): string {
  const rows = cells.map((r) => r.map(escapeUnprintable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function statusText(c: PluginCandidate): string {
  const errors = c.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = c.diagnostics.length - errors;
  const parts = [
    errors > 0 ? `${errors} error${errors > 1 ? 's' : ''}` : '',
    warnings > 0 ? `${warnings} warning${warnings > 1 ? 's' : ''}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return parts === '' ? c.status : `${c.status} (${parts})`;
}

/** The JSON form of a candidate, as `discover --json` and `validate --json` print it. */
export function candidateJson(c: PluginCandidate) {
  return {
    id: c.id ?? null,
    name: c.manifest?.metadata.name ?? null,
    version: c.manifest?.metadata.version ?? null,
    type: c.pluginType ?? null,
    status: c.status,
    path: c.pluginDir,
    manifestPath: c.manifestPath,
    entryPoint: c.entryPoint ?? null,
    searchPath: c.searchPath,
    diagnostics: c.diagnostics,
  };
}

export function searchPathJson(r: SearchPathReport) {
  return { path: r.path, status: r.status, plugins: r.plugins };
}
