import type { Diagnostic } from '../../diagnostics.js';
import type { ParsedCandidate } from '../../discovery/candidate.js';
import { LIMIT_FIELDS } from '../../manifest/limits.js';
import { patternCovers } from '../../manifest/topic-pattern.js';
import type { AccessLevel, PluginLimits, PluginPermissions } from '../../manifest/types.js';
import { DEFAULT_MAX_REPLICAS } from '../context.js';
import type { ValidationRule } from '../rule.js';

const LEVEL_RANK: Record<AccessLevel, number> = { none: 0, read: 1, readwrite: 2 };

/**
 * What the plugin asks of the host against what the policy grants: permissions, capabilities, limits and
 * sandbox mode. The host decides; a manifest can only ask.
 */
export const permissionRule: ValidationRule = {
  name: 'PermissionRule',
  validate(candidate, context, report) {
    const at = { file: candidate.manifestPath, pluginId: candidate.id };
    checkPermissions(candidate, context.policy.permissions, report);
    // The data directory's confinement (openat2 BENEATH) and its quotas are enforced by the WASI layer, which a
    // native library bypasses with its own syscalls: a native plugin is never given the directory (docs/MANIFEST.md).
    if (candidate.pluginType === 'native' && candidate.manifest.permissions.filesystem !== 'none') {
      report({
        code: 'filesystem_unsupported',
        severity: 'error',
        message: `plugin "${candidate.id}" is a native plugin and asks for filesystem access "${candidate.manifest.permissions.filesystem}": only WASM plugins get a data directory (its confinement and quotas are enforced by WASI, which native code bypasses); set filesystem = "none" or use the storage permission`,
        field: 'permissions.filesystem',
        ...at,
      });
    }

    // A host provides a handful of capabilities: looked up in its list (a Set per plugin cost more).
    const capabilities = context.systemCapabilities;
    candidate.manifest.requirements.capabilities.forEach((capability, i) => {
      if (!capabilities.includes(capability)) {
        report({
          code: 'capability_unavailable',
          severity: 'error',
          message: `plugin "${candidate.id}" requires capability "${capability}", which this host does not provide`,
          field: `requirements.capabilities[${i}]`,
          ...at,
        });
      }
    });

    const limits = candidate.manifest.limits;
    for (const key of Object.keys(limits) as (keyof PluginLimits)[]) {
      const value = limits[key] as number;
      const ceiling = context.policy.limitCeilings[key];
      if (value > ceiling) {
        report({
          code: 'limit_exceeds_policy',
          severity: 'error',
          message: `plugin "${candidate.id}" asks for ${LIMIT_FIELDS[key]} = ${value}, above the host policy's ceiling of ${ceiling}`,
          field: `limits.${LIMIT_FIELDS[key]}`,
          ...at,
        });
      }
    }

    const replicas = candidate.manifest.sandbox.replicas ?? 1;
    const maxReplicas = context.policy.maxReplicas ?? DEFAULT_MAX_REPLICAS;
    if (replicas > maxReplicas) {
      report({
        code: 'limit_exceeds_policy',
        severity: 'error',
        message: `plugin "${candidate.id}" asks for replicas = ${replicas}, above the host policy's ceiling of ${maxReplicas} (policy.max_replicas: each replica is a runner with the plugin's limits)`,
        field: 'sandbox.replicas',
        ...at,
      });
    }

    const mode = candidate.manifest.sandbox.mode;
    if (mode !== undefined && !context.policy.allowedSandboxModes.includes(mode)) {
      report({
        code: 'sandbox_mode_denied',
        severity: 'error',
        message: `plugin "${candidate.id}" asks for sandbox mode "${mode}"; the host policy allows ${context.policy.allowedSandboxModes.map((m) => `"${m}"`).join(', ')}`,
        field: 'sandbox.mode',
        ...at,
      });
    }
  },
};

/** Each permission asked against the policy's grant: access levels, log and network, event topics. */
function checkPermissions(
  candidate: ParsedCandidate,
  granted: PluginPermissions,
  report: (d: Diagnostic) => void,
): void {
  const asked = candidate.manifest.permissions;
  const deny = (field: string, what: string) =>
    report({
      code: 'permission_denied_by_policy',
      severity: 'error',
      message: `plugin "${candidate.id}" asks for ${what}, which the host policy does not grant (see [policy.permissions] in reed.toml)`,
      field: `permissions.${field}`,
      file: candidate.manifestPath,
      pluginId: candidate.id,
    });

  for (const key of ['storage', 'content', 'filesystem'] as const) {
    if (LEVEL_RANK[asked[key]] > LEVEL_RANK[granted[key]]) {
      deny(key, `${key} access "${asked[key]}" (policy allows at most "${granted[key]}")`);
    }
  }
  for (const key of ['log', 'network'] as const) {
    if (asked[key] && !granted[key]) deny(key, key === 'network' ? 'network access' : 'logging');
  }
  for (const kind of ['emit', 'subscribe'] as const) {
    asked.events[kind].forEach((topic, i) => {
      if (!granted.events[kind].some((allowed) => patternCovers(allowed, topic))) {
        deny(`events.${kind}[${i}]`, `to ${kind} events "${topic}"`);
      }
    });
  }
}
