import { DEFAULT_FILE_LIMITS } from '../../src/discovery/plugin-inventory.js';
import { DEFAULT_POLICY_PERMISSIONS } from '../../src/host/host-config.js';
import { DEFAULT_LIMIT_CEILINGS } from '../../src/manifest/limits.js';
import type { HostPolicy, ValidationContext } from '../../src/validation/context.js';
import { PLUGIN_API_VERSION } from '../../src/version.js';

/** A validation context with the built-in defaults, overridable per test. */
export function testContext(overrides: Partial<ValidationContext> = {}): ValidationContext {
  return {
    apiVersion: PLUGIN_API_VERSION,
    reedVersion: '1.0.0',
    loadedPlugins: [],
    systemCapabilities: ['log', 'storage', 'content', 'events', 'config'],
    policy: {
      permissions: structuredClone(DEFAULT_POLICY_PERMISSIONS),
      allowedSandboxModes: ['none', 'process', 'container'],
      limitCeilings: { ...DEFAULT_LIMIT_CEILINGS },
    },
    fileLimits: { ...DEFAULT_FILE_LIMITS },
    ...overrides,
  };
}

/** The default host policy with only the named parts changed: a test states just what it is about. */
export function policyWith(change: {
  permissions?: Partial<HostPolicy['permissions']>;
  allowedSandboxModes?: HostPolicy['allowedSandboxModes'];
}): HostPolicy {
  const policy = testContext().policy;
  return {
    ...policy,
    permissions: { ...policy.permissions, ...change.permissions },
    ...(change.allowedSandboxModes === undefined ? {} : { allowedSandboxModes: change.allowedSandboxModes }),
  };
}
