import type { LoadedPlugin, LoadOrder } from '../dependencies/resolve-dependencies.js';
import type { PluginCandidate } from '../discovery/candidate.js';
import { type DiscoveryResult, discoverPlugins } from '../discovery/discover.js';
import { validatePlugins } from '../validation/validator.js';
import { type HostConfig, validationContext } from './host-config.js';

export interface ScanResult extends DiscoveryResult {
  order: LoadOrder;
}

/**
 * discover -> validate -> resolve dependencies, for one host configuration. `inspect` runs between discovery and
 * validation, adding its own diagnostics (`reed-plugins validate` checks WASM modules there, so that a plugin whose
 * module load would refuse makes its dependants invalid too, as loading would).
 */
export function scanPlugins(
  config: HostConfig,
  loadedPlugins: LoadedPlugin[] = [],
  inspect?: (candidates: PluginCandidate[]) => void,
): ScanResult {
  const discovery = discoverPlugins({ searchPaths: config.searchPaths, fileLimits: config.fileLimits });
  inspect?.(discovery.candidates);
  const order = validatePlugins(discovery.candidates, validationContext(config, loadedPlugins));
  return { ...discovery, order };
}

export function countByStatus(
  candidates: readonly PluginCandidate[],
): Record<PluginCandidate['status'], number> {
  const counts = { valid: 0, invalid: 0, shadowed: 0 };
  for (const c of candidates) counts[c.status]++;
  return counts;
}
