// The labels every metric of src/server/metrics.ts shares, and what bounds them: tenants come from the hosts (never a
// caller's text), plugin ids are kept up to maxPlugins (tenant, plugin) pairs and `_other` after; codes, modes and
// reasons are the loader's own bounded sets.
import type { EventBase } from '../events/events.js';

export const DEFAULT_MAX_PLUGINS = 1000;
/** The plugin label of a call to an id no host has loaded (the id is the caller's text: never a label). */
export const NO_PLUGIN = '_none';
export const OTHER_PLUGIN = '_other';
/** The tenant label of a host that serves no tenant (the host of before tenants: the default tenant). */
export const DEFAULT_TENANT_LABEL = 'default';

export interface LabelOptions {
  /** Which hosts' events count (their `session`). Default: every host of this process. */
  sessions?: ((session: string) => boolean) | undefined;
  /** The tenant of a host (by its session) for events that do not name one. Default: `default`. */
  tenantOf?: ((session: string) => string | undefined) | undefined;
  /** Most (tenant, plugin) pairs given series of their own. Default DEFAULT_MAX_PLUGINS. */
  maxPlugins?: number | undefined;
}

export interface PluginLabels {
  tenant: string;
  plugin: string;
  mode: string;
}

/** The tenant and plugin labels of events and hosts, bounded: one per ReedMetrics, shared by its parts. */
export class MetricLabels {
  readonly maxPlugins: number;
  readonly #sessions: ((session: string) => boolean) | undefined;
  readonly #tenantBySession: ((session: string) => string | undefined) | undefined;
  /** `tenant\nplugin` pairs given a label of their own. */
  readonly #plugins = new Set<string>();

  constructor(options: LabelOptions) {
    this.maxPlugins = options.maxPlugins ?? DEFAULT_MAX_PLUGINS;
    this.#sessions = options.sessions;
    this.#tenantBySession = options.tenantOf;
  }

  /** The event's tenant (`default` for a host without one), or null for a host this registry does not count. */
  tenantOf(event: { session: string; tenant?: string | undefined }): string | null {
    if (this.#sessions !== undefined && !this.#sessions(event.session)) return null;
    const own = (event as { tenant?: unknown }).tenant;
    if (typeof own === 'string') return own;
    return this.#tenantBySession?.(event.session) ?? DEFAULT_TENANT_LABEL;
  }

  /** The plugin label: the id while the pairs are within maxPlugins, then `_other`. */
  plugin(tenant: string, plugin: string): string {
    const key = `${tenant}\n${plugin}`;
    if (this.#plugins.has(key)) return plugin;
    if (this.#plugins.size >= this.maxPlugins) return OTHER_PLUGIN;
    this.#plugins.add(key);
    return plugin;
  }

  /** An event's tenant, plugin and mode labels; undefined for a host this registry does not count. */
  of(event: EventBase): PluginLabels | undefined {
    const tenant = this.tenantOf(event);
    if (tenant === null) return undefined;
    return { tenant, plugin: this.plugin(tenant, event.pluginId), mode: event.mode };
  }
}
