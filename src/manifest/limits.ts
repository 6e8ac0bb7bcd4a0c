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
});

/** The limits a plugin runs with: the manifest's asks over the host defaults (validation caps the asks). */
export function effectiveLimits(
  asked: PluginLimits,
  defaults: ResolvedLimits = DEFAULT_LIMITS,
): ResolvedLimits {
  const out = { ...defaults };
  for (const [key, value] of Object.entries(asked) as [keyof ResolvedLimits, number | undefined][]) {
    if (value !== undefined) out[key] = value;
  }
  return out;
}
