import type { PluginLimits } from './types.js';

export type ResolvedLimits = Required<PluginLimits>;

/** What a plugin gets when its manifest does not ask. Documented in docs/MANIFEST.md and README.md. */
export const DEFAULT_LIMITS: Readonly<ResolvedLimits> = Object.freeze({
  memoryMb: 64,
  tableElements: 10_000,
  fuelPerCall: 1_000_000_000,
  callTimeoutMs: 5_000,
  maxOutputBytes: 16 * 1024 * 1024,
  storageQuotaBytes: 64 * 1024 * 1024,
  contentQuotaBytes: 16 * 1024 * 1024,
  contentQuotaItems: 10_000,
  logLineBytes: 4_096,
  logLinesPerSecond: 100,
  cpus: 1,
  pids: 64,
  tmpfsMb: 16,
  diskMb: 64,
  maxFiles: 10_000,
  extismVarBytes: 1024 * 1024,
});

/** The most a manifest may ask for unless the host policy says otherwise. */
export const DEFAULT_LIMIT_CEILINGS: Readonly<ResolvedLimits> = Object.freeze({
  memoryMb: 1_024,
  tableElements: 100_000,
  fuelPerCall: 100_000_000_000,
  callTimeoutMs: 300_000,
  maxOutputBytes: 256 * 1024 * 1024,
  storageQuotaBytes: 4 * 1024 * 1024 * 1024,
  contentQuotaBytes: 1024 * 1024 * 1024,
  contentQuotaItems: 1_000_000,
  logLineBytes: 65_536,
  logLinesPerSecond: 10_000,
  cpus: 4,
  pids: 1_024,
  tmpfsMb: 1_024,
  diskMb: 16_384,
  maxFiles: 1_000_000,
  extismVarBytes: 64 * 1024 * 1024,
});

/**
 * Each limit's key as plugin.toml and reed.toml spell it (`[limits]`, `[policy.limits]`). The one map between the
 * TOML names and the camelCase ones the code uses: diagnostics name the TOML key, parsing reads it.
 */
export const LIMIT_FIELDS: Readonly<Record<keyof ResolvedLimits, string>> = Object.freeze({
  memoryMb: 'memory_mb',
  tableElements: 'table_elements',
  fuelPerCall: 'fuel_per_call',
  callTimeoutMs: 'call_timeout_ms',
  maxOutputBytes: 'max_output_bytes',
  storageQuotaBytes: 'storage_quota_bytes',
  contentQuotaBytes: 'content_quota_bytes',
  contentQuotaItems: 'content_quota_items',
  logLineBytes: 'log_line_bytes',
  logLinesPerSecond: 'log_lines_per_second',
  cpus: 'cpus',
  pids: 'pids',
  tmpfsMb: 'tmpfs_mb',
  diskMb: 'disk_mb',
  maxFiles: 'max_files',
  extismVarBytes: 'extism_var_bytes',
});

const LIMIT_KEYS = Object.keys(LIMIT_FIELDS) as (keyof ResolvedLimits)[];

/**
 * A `[limits]` table as TOML spells it, read into camelCase. Keys that are not limits are dropped here: the schema
 * has already warned that they are ignored, and none may reach the limits a sandbox is given.
 */
export function limitsFromToml(
  table: Readonly<Record<string, number | undefined>> | undefined,
): PluginLimits {
  const out: PluginLimits = {};
  if (table === undefined) return out;
  for (const key of LIMIT_KEYS) {
    const value = Object.hasOwn(table, LIMIT_FIELDS[key]) ? table[LIMIT_FIELDS[key]] : undefined;
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** The limits a plugin runs with: the asks (a manifest's, or reed.toml's) over the defaults. Validation caps the asks. */
export function effectiveLimits(
  asked: Readonly<PluginLimits>,
  defaults: Readonly<ResolvedLimits> = DEFAULT_LIMITS,
): ResolvedLimits {
  const out = { ...defaults };
  for (const key of LIMIT_KEYS) {
    const value = asked[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
