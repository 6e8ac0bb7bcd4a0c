import type { EventBus, PluginEvent, StorageService } from '../host/services.js';
import { entrySize } from '../host/services.js';
import type { TenantQuotas } from '../tenant-quotas.js';
import { bucketFor, quotaExceeded, type TokenBucket } from './quota.js';

interface Space {
  bytes: number;
  keys: number;
}

/**
 * A tenant's StorageService: the tenant host's own store (its own LMDB under the tenant's data dir) behind the
 * tenant's storage_bytes and storage_keys quotas, summed over its plugins. Each plugin's bytes and keys are read
 * from the store the first time the plugin touches it (or when the registry seeds its loaded plugins), then kept
 * up to date on each put and delete; a plugin's own limits.storage_quota_bytes is still the inner store's check.
 */
export class TenantStorage implements StorageService {
  readonly #inner: StorageService;
  readonly #tenant: string;
  readonly #quotas: TenantQuotas;
  readonly #spaces = new Map<string, Space>();
  #bytes = 0;
  #keys = 0;

  constructor(inner: StorageService, tenant: string, quotas: TenantQuotas) {
    this.#inner = inner;
    this.#tenant = tenant;
    this.#quotas = quotas;
  }

  /** The plugin's bytes and keys, read from the store once. */
  space(pluginId: string): Space {
    let space = this.#spaces.get(pluginId);
    if (space === undefined) {
      space = {
        bytes: this.#inner.usage(pluginId),
        keys: this.#inner.list(pluginId, '', Number.MAX_SAFE_INTEGER).length,
      };
      this.#spaces.set(pluginId, space);
      this.#bytes += space.bytes;
      this.#keys += space.keys;
    }
    return space;
  }

  /** Counts every plugin the store holds data for (when it can say), loaded or not: removed ones count too. */
  seed(): void {
    for (const id of this.#inner.namespaces?.() ?? []) this.space(id);
  }

  /** What the tenant's plugins seen so far hold together. */
  total(): Space {
    return { bytes: this.#bytes, keys: this.#keys };
  }

  get(pluginId: string, key: string): Uint8Array | undefined {
    return this.#inner.get(pluginId, key);
  }

  put(pluginId: string, key: string, value: Uint8Array, quotaBytes: number): void {
    const space = this.space(pluginId);
    const old = this.#inner.get(pluginId, key);
    const { storage_bytes: maxBytes, storage_keys: maxKeys } = this.#quotas;
    if (old === undefined && maxKeys !== undefined && this.#keys + 1 > maxKeys)
      throw quotaExceeded(
        this.#tenant,
        'storage_keys',
        maxKeys,
        `a new storage key would make ${this.#keys + 1} keys across its plugins`,
        null,
        pluginId,
      );
    if (maxBytes !== undefined) {
      const after =
        this.#bytes -
        (old === undefined ? 0 : entrySize(pluginId, key, old)) +
        entrySize(pluginId, key, value);
      if (after > maxBytes)
        throw quotaExceeded(
          this.#tenant,
          'storage_bytes',
          maxBytes,
          `a storage write would make ${after} bytes across its plugins`,
          null,
          pluginId,
        );
    }
    this.#inner.put(pluginId, key, value, quotaBytes);
    this.#settle(pluginId, space, old === undefined ? 1 : 0);
  }

  delete(pluginId: string, key: string): boolean {
    const space = this.space(pluginId);
    const deleted = this.#inner.delete(pluginId, key);
    if (deleted) this.#settle(pluginId, space, -1);
    return deleted;
  }

  /** The store's own count of the plugin's bytes (its page size), after a change. */
  #settle(pluginId: string, space: Space, keys: number): void {
    const bytes = this.#inner.usage(pluginId);
    this.#bytes += bytes - space.bytes;
    this.#keys += keys;
    space.bytes = bytes;
    space.keys += keys;
  }

  list(pluginId: string, prefix: string, limit: number): string[] {
    return this.#inner.list(pluginId, prefix, limit);
  }

  usage(pluginId: string): number {
    return this.#inner.usage(pluginId);
  }

  namespaces(): string[] {
    return this.#inner.namespaces?.() ?? [];
  }

  close(): void {
    this.#inner.close();
  }
}

/** A tenant's EventBus: its own bus (no event crosses tenants) behind events_per_second. */
export class TenantEventBus implements EventBus {
  readonly #inner: EventBus;
  readonly #tenant: string;
  readonly #bucket: TokenBucket | undefined;
  /** Events refused, for the tenant's usage. */
  denied = 0;

  constructor(inner: EventBus, tenant: string, quotas: TenantQuotas) {
    this.#inner = inner;
    this.#tenant = tenant;
    this.#bucket = bucketFor(quotas.events_per_second);
  }

  emit(event: PluginEvent): void {
    const wait = this.#bucket?.take();
    if (wait !== undefined && this.#bucket !== undefined) {
      this.denied++;
      throw quotaExceeded(
        this.#tenant,
        'events_per_second',
        this.#bucket.rate,
        `event "${event.topic}" is past its events per second`,
        wait,
        event.source,
      );
    }
    this.#inner.emit(event);
  }

  subscribe(pattern: string, handler: (event: PluginEvent) => void): () => void {
    return this.#inner.subscribe(pattern, handler);
  }
}
