import { basename } from 'node:path';
import type { LoadOrder } from '../../src/dependencies/resolve-dependencies.js';
import type { PluginCandidate } from '../../src/discovery/candidate.js';
import { type DiscoveryResult, discoverPlugins } from '../../src/discovery/discover.js';
import type { FileLimits } from '../../src/discovery/plugin-inventory.js';
import type { ValidationContext } from '../../src/validation/context.js';
import { validatePlugins } from '../../src/validation/validator.js';
import { testContext } from './context.js';

export interface Scan extends DiscoveryResult {
  order: LoadOrder;
  /** The candidate whose plugin directory is named `dirName`; throws when there is none. */
  byDir(dirName: string): PluginCandidate;
  codes(dirName: string): string[];
}

/** discover + validate over `searchPaths`, as the host does, with test defaults. */
export function scan(
  searchPaths: string[],
  options: { context?: Partial<ValidationContext>; fileLimits?: Partial<FileLimits> } = {},
): Scan {
  const context = testContext(options.context);
  if (options.fileLimits) Object.assign(context.fileLimits, options.fileLimits);
  const result = discoverPlugins({ searchPaths, fileLimits: context.fileLimits });
  const order = validatePlugins(result.candidates, context);
  const byDir = (dirName: string) => {
    const found = result.candidates.find((c) => basename(c.pluginDir) === dirName);
    if (found === undefined) throw new Error(`no candidate in directory ${dirName}`);
    return found;
  };
  return { ...result, order, byDir, codes: (d) => byDir(d).diagnostics.map((x) => x.code) };
}
