import type { PluginUsage } from './tenant.js';

export function emptyUsage(): PluginUsage {
  return {
    calls: {},
    wallMs: 0,
    fuel: 0,
    bytesIn: 0,
    bytesOut: 0,
    storageBytes: 0,
    storageKeys: 0,
    sandboxStarts: 0,
  };
}

/** Adds `b` into `a` (the total of a tenant's plugins). */
export function addUsage(a: PluginUsage, b: PluginUsage): void {
  for (const [code, n] of Object.entries(b.calls)) a.calls[code] = (a.calls[code] ?? 0) + n;
  a.wallMs += b.wallMs;
  a.fuel += b.fuel;
  a.bytesIn += b.bytesIn;
  a.bytesOut += b.bytesOut;
  a.storageBytes += b.storageBytes;
  a.storageKeys += b.storageKeys;
  a.sandboxStarts += b.sandboxStarts;
}

/**
 * One tenant's accounting since it started: per plugin, what its calls took and gave. Plugins are entered only
 * once the host knows them (a call to an id that is not loaded counts in the tenant's total, under no plugin), so
 * the map is bounded by the plugins the tenant has had, not by the ids callers make up.
 */
export class Accounting {
  readonly since = new Date().toISOString();
  readonly plugins = new Map<string, PluginUsage>();
  /** Calls to no loaded plugin (plugin_not_loaded) and denials before any plugin was reached. */
  readonly unattributed = emptyUsage();
  readonly denied: Record<string, number> = {};

  of(pluginId: string): PluginUsage {
    let usage = this.plugins.get(pluginId);
    if (usage === undefined) {
      usage = emptyUsage();
      this.plugins.set(pluginId, usage);
    }
    return usage;
  }

  call(
    pluginId: string,
    known: boolean,
    code: string,
    wallMs: number,
    fuel: number,
    bytesIn: number,
    bytesOut: number,
  ): void {
    const u = known ? this.of(pluginId) : this.unattributed;
    u.calls[code] = (u.calls[code] ?? 0) + 1;
    u.wallMs += wallMs;
    u.fuel += fuel;
    u.bytesIn += bytesIn;
    u.bytesOut += bytesOut;
  }

  deny(quota: string): void {
    this.denied[quota] = (this.denied[quota] ?? 0) + 1;
  }
}
