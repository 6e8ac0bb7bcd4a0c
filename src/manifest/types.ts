import type { ACCESS_LEVELS, CONTAINER_RUNTIMES, SANDBOX_MODES, WASM_ABIS } from './schema.js';

/** What runs the plugin code. (`script`, named in the seed, is rejected with `plugin_type_unsupported`.) */
export type PluginType = 'wasm' | 'native';
export type SandboxMode = (typeof SANDBOX_MODES)[number];
export type ContainerRuntime = (typeof CONTAINER_RUNTIMES)[number];
export type AccessLevel = (typeof ACCESS_LEVELS)[number];
/** Which plugin ABI a WASM module speaks: reed's own (`env`/`reed` imports) or Extism's (`extism:host/env`). */
export type WasmAbi = (typeof WASM_ABIS)[number];

export interface PluginMetadata {
  id: string;
  name: string;
  version: string;
  apiVersion: string;
  /** Lower loads first among plugins that do not depend on each other. Default 100. */
  priority: number;
  description?: string;
  authors: string[];
  license?: string;
  homepage?: string;
}

export interface PluginDependency {
  id: string;
  /** A semver range; default `*`. */
  version: string;
  /** An optional dependency is ordered before the plugin when present and only warned about when absent. */
  optional: boolean;
}

export interface PluginRequirements {
  minReedVersion?: string;
  dependencies: PluginDependency[];
  capabilities: string[];
}

export interface PluginPermissions {
  storage: AccessLevel;
  content: AccessLevel;
  events: { emit: string[]; subscribe: string[] };
  log: boolean;
  network: boolean;
  filesystem: AccessLevel;
}

/** Limits a manifest may ask for. Absent ones take the host's defaults; none may pass the policy ceiling. */
export interface PluginLimits {
  memoryMb?: number;
  tableElements?: number;
  fuelPerCall?: number;
  callTimeoutMs?: number;
  maxOutputBytes?: number;
  storageQuotaBytes?: number;
  contentQuotaBytes?: number;
  contentQuotaItems?: number;
  logLineBytes?: number;
  logLinesPerSecond?: number;
  cpus?: number;
  pids?: number;
  tmpfsMb?: number;
  /** The plugin's data directory (permissions.filesystem): bytes it may hold, in MiB. */
  diskMb?: number;
  /** The plugin's data directory: files, directories and links it may hold. */
  maxFiles?: number;
  /** Extism plugins: bytes of variables (var_set) an instance may hold, keys and values. */
  extismVarBytes?: number;
}

/** A parsed, checked `plugin.toml` with every default applied. See docs/MANIFEST.md. */
export interface PluginManifest {
  metadata: PluginMetadata;
  requirements: PluginRequirements;
  /** As written; `undefined` means "detect from the files present". */
  pluginType?: PluginType;
  entryPoint?: string;
  /** WASM: the ABI the manifest says the module speaks; `undefined`: detected from its imports. */
  abi?: WasmAbi;
  permissions: PluginPermissions;
  configuration: Record<string, unknown>;
  limits: PluginLimits;
  /**
   * `idleTimeoutMs`: `[sandbox] idle_timeout` (0: "off"); undefined: the host's. `replicas`: `[sandbox] replicas`
   * (1..16); undefined: 1.
   */
  sandbox: { mode?: SandboxMode; runtime?: ContainerRuntime; idleTimeoutMs?: number; replicas?: number };
  /** `preopen`: the name the data directory is preopened under, when not DATA_GUEST_NAME. */
  wasi: { args: string[]; env: Record<string, string>; preopen?: string };
}

export const DEFAULT_PRIORITY = 100;
export const DEFAULT_PERMISSIONS: Readonly<PluginPermissions> = Object.freeze({
  storage: 'none',
  content: 'none',
  events: Object.freeze({ emit: [], subscribe: [] }) as PluginPermissions['events'],
  log: true,
  network: false,
  filesystem: 'none',
});
