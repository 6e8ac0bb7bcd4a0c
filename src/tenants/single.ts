import type { Readable } from 'node:stream';
import type { CallOptions, CallOutcome } from '../backends/sandbox.js';
import { ReedError } from '../errors.js';
import type { PluginHost, RemoveOptions } from '../host/plugin-host.js';
import type { PluginStatus } from '../host/plugin-set.js';
import {
  DEFAULT_TENANT,
  type PluginUsage,
  type Tenant,
  type TenantDirectory,
  type TenantSpec,
  type TenantUsage,
} from './tenant.js';

/**
 * The directory of a host of before tenants: one tenant, `default`, over one PluginHost, with no quotas. What
 * `createApiServer(host)` serves (the library's callers and the tests that hand it a host), and what serve ran on
 * before the tenant registry. Its accounting counts calls, bytes, wall time and fuel per plugin since it was made.
 */
export function singleTenantDirectory(host: PluginHost): TenantDirectory {
  const tenant = new SingleTenant(host);
  return {
    get: (id) => (id === DEFAULT_TENANT ? tenant : undefined),
    list: () => [tenant],
    create: (id) =>
      Promise.reject(
        id === DEFAULT_TENANT
          ? new ReedError(
              'tenant_exists',
              `the tenant "${DEFAULT_TENANT}" exists and cannot be created again`,
            )
          : new ReedError(
              'tenant_invalid',
              `this host serves only the tenant "${DEFAULT_TENANT}"; tenant "${id.slice(0, 64)}" cannot be created (declare [tenants] in reed.toml)`,
            ),
      ),
    remove: (id) =>
      Promise.reject(
        id === DEFAULT_TENANT
          ? new ReedError('tenant_invalid', `the tenant "${DEFAULT_TENANT}" cannot be removed`)
          : new ReedError('tenant_not_found', `no tenant "${id.slice(0, 64)}"`),
      ),
    removedData: () => [],
    purgeRemoved: (id) =>
      Promise.reject(
        new ReedError('tenant_not_found', `no data of a removed tenant "${id.slice(0, 64)}" is kept`),
      ),
    usage: (id) => {
      if (id !== DEFAULT_TENANT) throw new ReedError('tenant_not_found', `no tenant "${id.slice(0, 64)}"`);
      return tenant.usage();
    },
    close: () => host.close(),
  };
}

const emptyUsage = (): PluginUsage => ({
  calls: {},
  wallMs: 0,
  fuel: 0,
  bytesIn: 0,
  bytesOut: 0,
  storageBytes: 0,
  storageKeys: 0,
  sandboxStarts: 0,
});

class SingleTenant implements Tenant {
  readonly id = DEFAULT_TENANT;
  readonly origin = 'default' as const;
  readonly spec: TenantSpec = {};
  readonly #since = new Date().toISOString();
  /** An unknown id's call (`plugin_not_loaded`) is not kept: no growth by guessing ids. */
  readonly #plugins = new Map<string, PluginUsage>();
  #inFlight = 0;

  constructor(readonly host: PluginHost) {}

  async call(
    pluginId: string,
    fn: string,
    input?: Uint8Array | string,
    options?: CallOptions,
  ): Promise<CallOutcome> {
    const started = performance.now();
    this.#inFlight++;
    let outcome = 'ok';
    let result: CallOutcome | undefined;
    try {
      result = await this.host.call(pluginId, fn, input, options);
      return result;
    } catch (error) {
      outcome = error instanceof ReedError ? error.code : 'internal_error';
      throw error;
    } finally {
      this.#inFlight--;
      if (outcome !== 'plugin_not_loaded') {
        const usage = this.#plugins.get(pluginId) ?? emptyUsage();
        this.#plugins.set(pluginId, usage);
        usage.calls[outcome] = (usage.calls[outcome] ?? 0) + 1;
        usage.wallMs += performance.now() - started;
        usage.bytesIn += typeof input === 'string' ? Buffer.byteLength(input) : (input?.length ?? 0);
        usage.bytesOut += result?.output.length ?? 0;
        usage.fuel += result?.stats.fuelConsumed ?? 0;
      }
    }
  }

  install(pluginId: string, archive: Readable): Promise<PluginStatus> {
    return this.host.install(pluginId, archive);
  }

  remove(pluginId: string, options?: RemoveOptions): Promise<string[]> {
    return this.host.remove(pluginId, options);
  }

  reload(pluginId: string): Promise<PluginStatus> {
    return this.host.reload(pluginId);
  }

  status(): PluginStatus[] {
    return this.host.status();
  }

  usage(): TenantUsage {
    const total = emptyUsage();
    const plugins: Record<string, PluginUsage> = {};
    for (const [id, usage] of this.#plugins) {
      plugins[id] = { ...usage, calls: { ...usage.calls } };
      for (const [code, n] of Object.entries(usage.calls)) total.calls[code] = (total.calls[code] ?? 0) + n;
      total.wallMs += usage.wallMs;
      total.fuel += usage.fuel;
      total.bytesIn += usage.bytesIn;
      total.bytesOut += usage.bytesOut;
    }
    return {
      tenant: this.id,
      since: this.#since,
      plugins,
      total,
      inFlight: this.#inFlight,
      denied: {},
      quotas: {},
    };
  }
}
