import type { Readable } from 'node:stream';
import type { CallOptions, CallOutcome } from '../backends/sandbox.js';
import { ReedError } from '../errors.js';
import type { PluginHost, PluginStatus, RemoveOptions } from '../host/plugin-host.js';
import { Accounting, addUsage, emptyUsage } from './accounting.js';
import { bucketFor, type QuotaName, quotaExceeded, type TokenBucket } from './quota.js';
import type { Tenant, TenantSpec, TenantUsage } from './tenant.js';
import type { TenantEventBus, TenantStorage } from './tenant-services.js';

/**
 * One tenant: its PluginHost behind its admission quotas (calls in flight, calls per second, plugins), with its
 * accounting. Storage and events quotas are in its services (tenant-services.ts), so a plugin meets them too.
 */
export class TenantHost implements Tenant {
  readonly id: string;
  readonly origin: Tenant['origin'];
  readonly spec: TenantSpec;
  readonly host: PluginHost;
  readonly storage: TenantStorage;
  readonly events: TenantEventBus;
  readonly accounting = new Accounting();
  readonly #calls: TokenBucket | undefined;
  #inFlight = 0;
  /** Ids being installed now (max_plugins). */
  readonly #installing = new Set<string>();

  constructor(
    id: string,
    origin: Tenant['origin'],
    spec: TenantSpec,
    host: PluginHost,
    storage: TenantStorage,
    events: TenantEventBus,
  ) {
    this.id = id;
    this.origin = origin;
    this.spec = spec;
    this.host = host;
    this.storage = storage;
    this.events = events;
    this.#calls = bucketFor(spec.quotas?.calls_per_second, spec.quotas?.calls_burst);
  }

  get quotas() {
    return this.spec.quotas ?? {};
  }

  #deny(
    quota: QuotaName,
    limit: number,
    what: string,
    retryAfterMs: number | null,
    pluginId?: string,
  ): ReedError {
    this.accounting.deny(quota);
    return quotaExceeded(this.id, quota, limit, what, retryAfterMs, pluginId);
  }

  call(
    pluginId: string,
    fn: string,
    input: Uint8Array | string = new Uint8Array(0),
    options?: CallOptions,
  ): Promise<CallOutcome> {
    const max = this.quotas.max_concurrent_calls;
    if (max !== undefined && this.#inFlight >= max)
      return Promise.reject(
        this.#deny('max_concurrent_calls', max, `${this.#inFlight} calls are in flight`, null, pluginId),
      );
    if (this.#calls !== undefined) {
      const wait = this.#calls.take();
      if (wait !== undefined)
        return Promise.reject(
          this.#deny(
            'calls_per_second',
            this.#calls.rate,
            'a call is past its calls per second',
            wait,
            pluginId,
          ),
        );
    }
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    this.#inFlight++;
    const started = performance.now();
    const settle = (code: string, fuel: number, out: number) => {
      this.#inFlight--;
      // Per plugin only for a plugin the host has: callers cannot grow the accounting by making up ids.
      const known = code === 'ok' || this.#has(pluginId);
      this.accounting.call(pluginId, known, code, performance.now() - started, fuel, bytes.byteLength, out);
    };
    let outcome: Promise<CallOutcome>;
    try {
      outcome = this.host.call(pluginId, fn, bytes, options);
    } catch (error) {
      outcome = Promise.reject(error);
    }
    return outcome.then(
      (result) => {
        settle('ok', result.stats.fuelConsumed, result.output.byteLength);
        return result;
      },
      (error: unknown) => {
        settle(error instanceof ReedError ? error.code : 'internal_error', 0, 0);
        throw error;
      },
    );
  }

  #has(pluginId: string): boolean {
    try {
      this.host.pluginStatus(pluginId);
      return true;
    } catch {
      return false;
    }
  }

  /** Calls in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  async install(pluginId: string, archive: Readable): Promise<PluginStatus> {
    const max = this.quotas.max_plugins;
    if (max === undefined) return this.host.install(pluginId, archive);
    // Installs under way count too: two at once must not both pass the check.
    const ids = new Set([...this.host.status().map((s) => s.id), ...this.#installing]);
    if (!ids.has(pluginId) && ids.size >= max) {
      archive.resume();
      throw this.#deny(
        'max_plugins',
        max,
        `installing "${pluginId}" would make ${ids.size + 1} plugins`,
        null,
        pluginId,
      );
    }
    const mine = !this.#installing.has(pluginId);
    this.#installing.add(pluginId);
    try {
      return await this.host.install(pluginId, archive);
    } finally {
      if (mine) this.#installing.delete(pluginId);
    }
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
    const plugins: Record<string, ReturnType<typeof emptyUsage>> = {};
    const ids = new Set([...this.accounting.plugins.keys(), ...this.host.status().map((s) => s.id)]);
    const total = emptyUsage();
    addUsage(total, this.accounting.unattributed);
    for (const id of [...ids].sort()) {
      const u = { ...this.accounting.of(id) };
      u.calls = { ...u.calls };
      const space = this.storage.space(id);
      u.storageBytes = space.bytes;
      u.storageKeys = space.keys;
      plugins[id] = u;
      addUsage(total, u);
    }
    const denied = { ...this.accounting.denied };
    if (this.events.denied > 0) denied.events_per_second = this.events.denied;
    return {
      tenant: this.id,
      since: this.accounting.since,
      plugins,
      total,
      inFlight: this.#inFlight,
      denied,
      quotas: { ...this.quotas },
    };
  }
}
