// The public API. Everything not exported here is internal and may change without notice.

export { ensureRunnerImages, type RunnerImages } from './backends/container/images.js';
export type {
  CallOptions,
  CallOutcome,
  CallStats,
  SandboxHealth,
  SandboxStatus,
} from './backends/sandbox.js';
export type { Supervision } from './backends/supervisor.js';
export { CODES, type Code, isCode } from './codes.js';
export {
  type LoadedPlugin,
  type LoadOrder,
  resolveDependencies,
} from './dependencies/resolve-dependencies.js';
export { type Diagnostic, formatDiagnostic, hasErrors, type Severity } from './diagnostics.js';
export type { CandidateStatus, ParsedCandidate, PluginCandidate } from './discovery/candidate.js';
export {
  analyzeCandidate,
  type DiscoveryOptions,
  type DiscoveryResult,
  defaultSearchPaths,
  discoverPlugins,
  type SearchPathReport,
  type SearchPathStatus,
} from './discovery/discover.js';
export { nativeLibraryNames, WASM_FILE } from './discovery/entry-point.js';
export {
  DEFAULT_FILE_LIMITS,
  type FileLimits,
  type PluginFile,
  type PluginInventory,
} from './discovery/plugin-inventory.js';
export { type ErrorLocation, isReedError, ReedError, type ReedErrorOptions } from './errors.js';
export { type AuditEvent, subscribeAudit } from './events/audit.js';
export {
  type BreakerClosedEvent,
  type BreakerHalfOpenEvent,
  type BreakerOpenedEvent,
  type CallFinishedEvent,
  EVENT_NAMES,
  type EventBase,
  type EventName,
  type PluginFailedEvent,
  type PluginLoadedEvent,
  type PluginRemovedEvent,
  type PluginRolledBackEvent,
  type PluginStoppedEvent,
  type PluginUpgradedEvent,
  type PluginUpgradeFailedEvent,
  type ReedEvents,
  type SandboxCrashedEvent,
  type SandboxRestartedEvent,
  type SandboxStartedEvent,
  subscribeEvent,
} from './events/events.js';
export {
  CONFIG_FILE,
  DEFAULT_CAPABILITIES,
  DEFAULT_POLICY_PERMISSIONS,
  type HostConfig,
  type HostConfigOverrides,
  type LoadHostConfigOptions,
  loadHostConfig,
  validationContext,
} from './host/host-config.js';
export { InstallSlots } from './host/install-slots.js';
export { LmdbStorage } from './host/lmdb-storage.js';
export {
  type LifecycleRecord,
  PluginHost,
  type PluginHostOptions,
  type PluginState,
  type PluginStatus,
  type RemoveOptions,
} from './host/plugin-host.js';
export type { HostServices } from './host/plugin-host-api.js';
export { type ScanResult, scanPlugins } from './host/scan-plugins.js';
export {
  type ContentItem,
  type ContentService,
  type ContentUsage,
  type EventBus,
  MemoryContentService,
  MemoryEventBus,
  MemoryStorage,
  type PluginEvent,
  type StorageService,
} from './host/services.js';
export { DEFAULT_WATCH_DEBOUNCE_MS, type WatchOptions, watchPlugins } from './host/watch.js';
export {
  DEFAULT_LIMIT_CEILINGS,
  DEFAULT_LIMITS,
  effectiveLimits,
  type ResolvedLimits,
} from './manifest/limits.js';
export {
  MANIFEST_FILE,
  type ManifestParseResult,
  parseManifest,
  readManifest,
} from './manifest/parse-manifest.js';
export { ManifestSchema } from './manifest/schema.js';
export type {
  AccessLevel,
  ContainerRuntime,
  PluginDependency,
  PluginLimits,
  PluginManifest,
  PluginMetadata,
  PluginPermissions,
  PluginRequirements,
  PluginType,
  SandboxMode,
} from './manifest/types.js';
export {
  type ApiServerOptions,
  createApiServer,
  createTenantApiServer,
  DEFAULT_MAX_INPUT_BYTES,
  DEFAULT_MAX_INSTALL_BYTES,
  listenOnSocket,
  type TenantApiServerOptions,
} from './server/api-server.js';
export { Authenticator, type AuthOptions, registerAuth, transportOf } from './server/auth.js';
export type { Principal } from './server/principal.js';
export { listenTls, parseListen, type TlsListenOptions } from './server/tls-listener.js';
export type { TenantIdentity, TenantQuotas } from './tenant-quotas.js';
export { AuditLog, type AuditLogOptions } from './tenants/audit-log.js';
export { TenantRegistry, type TenantRegistryOptions } from './tenants/registry.js';
export { singleTenantDirectory } from './tenants/single.js';
export {
  DEFAULT_TENANT,
  type PluginUsage,
  type RemoveTenantOptions,
  TENANT_ID_PATTERN,
  type Tenant,
  type TenantDirectory,
  type TenantSpec,
  type TenantUsage,
} from './tenants/tenant.js';
export {
  AdminToken,
  type TokenInfo,
  type TokenScope,
  TokenStore,
  type VerifiedToken,
} from './tenants/tokens.js';
export type { HostPolicy, ValidationContext } from './validation/context.js';
export type { ValidationRule } from './validation/rule.js';
export { DEFAULT_RULES, validatePlugins } from './validation/validator.js';
export { LOADER_VERSION, PLUGIN_API_VERSION } from './version.js';
