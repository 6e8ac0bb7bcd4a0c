import { type LoadOrder, resolveDependencies } from '../dependencies/resolve-dependencies.js';
import { hasErrors } from '../diagnostics.js';
import type { PluginCandidate } from '../discovery/candidate.js';
import { isParsed } from '../discovery/candidate.js';
import type { ValidationContext } from './context.js';
import type { ValidationRule } from './rule.js';
import { apiVersionRule } from './rules/api-version-rule.js';
import { permissionRule } from './rules/permission-rule.js';
import { securityRule } from './rules/security-rule.js';

/** The per-plugin rules of the seed, in order. (Its DependencyRule spans all plugins: resolveDependencies.) */
export const DEFAULT_RULES: readonly ValidationRule[] = [apiVersionRule, permissionRule, securityRule];

/**
 * Runs every rule over every parsed, non-shadowed candidate, then resolves dependencies across them.
 * Mutates each candidate's diagnostics and status; returns the load order of the valid ones.
 */
export function validatePlugins(
  candidates: PluginCandidate[],
  context: ValidationContext,
  rules: readonly ValidationRule[] = DEFAULT_RULES,
): LoadOrder {
  for (const candidate of candidates) {
    if (!isParsed(candidate) || candidate.status === 'shadowed') continue;
    for (const rule of rules) {
      rule.validate(candidate, context, (d) => candidate.diagnostics.push(d));
    }
    if (hasErrors(candidate.diagnostics)) candidate.status = 'invalid';
  }
  return resolveDependencies(candidates, context.loadedPlugins);
}
