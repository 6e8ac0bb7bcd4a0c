import { ReedError } from '../errors.js';
import { matchTopic } from '../manifest/topic-pattern.js';
import { DEFAULT_STORAGE_PAGE_BYTES, storageEntryCost } from './storage-cost.js';

/**
 * The host API services a CMS implements (or takes the defaults of). Every method is synchronous: a WASM
 * plugin in mode `none` calls them on the calling thread, in the middle of its own execution. Permission
 * checks are not done here but in PluginHostApi, which wraps these for each plugin.
 */

/** Key-value storage, one namespace per plugin. */
export interface StorageService {
  get(pluginId: string, key: string): Uint8Array | undefined;
  /** Throws `storage_quota_exceeded` when the plugin's namespace would pass `quotaBytes`. */
  put(pluginId: string, key: string, value: Uint8Array, quotaBytes: number): void;
  delete(pluginId: string, key: string): boolean;
  /** Keys starting with `prefix`, sorted. */
  list(pluginId: string, prefix: string, limit: number): string[];
  /** Bytes the namespace costs on disk (entrySize of each entry: keys, values and the store's overhead). */
  usage(pluginId: string): number;
  /**
   * Optional: the plugin ids that hold at least one entry, sorted. A tenant's storage quota (src/tenants/) counts
   * them all from the start when the store can say; otherwise only the plugins it sees.
   */
  namespaces?(): string[];
  close(): void;
}

export interface ContentItem {
  id: string;
  type: string;
  data: unknown;
  createdBy: string;
}

/** What a plugin's content holds, for its quota (limits.content_quota_items and content_quota_bytes). */
export interface ContentUsage {
  items: number;
  bytes: number;
}

export interface ContentService {
  /** `bytes`: the size the item counts for (its type and JSON text, in UTF-8), to add to the plugin's usage. */
  create(pluginId: string, type: string, data: unknown, bytes: number): string;
  get(id: string): ContentItem | undefined;
  /** What the plugin's items add up to; PluginHostApi checks the quota against it before each create. */
  usage(pluginId: string): ContentUsage;
}

export interface PluginEvent {
  topic: string;
  data: unknown;
  /** The id of the plugin that emitted it, set by the host (a plugin cannot choose it). */
  source: string;
}

export interface EventBus {
  emit(event: PluginEvent): void;
  /** `pattern`: a topic, or a pattern with `*` (matched by matchTopic, never a regex). Returns the unsubscribe function. */
  subscribe(pattern: string, handler: (event: PluginEvent) => void): () => void;
}

/** Storage in memory: for tests and for hosts that want nothing on disk. */
export class MemoryStorage implements StorageService {
  readonly #spaces = new Map<string, Map<string, Uint8Array>>();
  readonly #usage = new Map<string, number>();

  #space(pluginId: string): Map<string, Uint8Array> {
    let space = this.#spaces.get(pluginId);
    if (space === undefined) {
      space = new Map();
      this.#spaces.set(pluginId, space);
    }
    return space;
  }

  get(pluginId: string, key: string): Uint8Array | undefined {
    return this.#spaces.get(pluginId)?.get(key);
  }

  put(pluginId: string, key: string, value: Uint8Array, quotaBytes: number): void {
    const space = this.#space(pluginId);
    const old = space.get(key);
    const used =
      this.usage(pluginId) -
      (old === undefined ? 0 : entrySize(pluginId, key, old)) +
      entrySize(pluginId, key, value);
    checkQuota(pluginId, used, quotaBytes);
    space.set(key, value.slice());
    this.#usage.set(pluginId, used);
  }

  delete(pluginId: string, key: string): boolean {
    const space = this.#spaces.get(pluginId);
    const old = space?.get(key);
    if (space === undefined || old === undefined) return false;
    space.delete(key);
    this.#usage.set(pluginId, this.usage(pluginId) - entrySize(pluginId, key, old));
    return true;
  }

  list(pluginId: string, prefix: string, limit: number): string[] {
    const keys = [...(this.#spaces.get(pluginId)?.keys() ?? [])].filter((k) => k.startsWith(prefix)).sort();
    return keys.slice(0, limit);
  }

  usage(pluginId: string): number {
    return this.#usage.get(pluginId) ?? 0;
  }

  namespaces(): string[] {
    return [...this.#spaces.entries()]
      .filter(([, space]) => space.size > 0)
      .map(([id]) => id)
      .sort();
  }

  close(): void {}
}

/** What an entry counts against the quota: its on-disk cost, not its logical size (src/host/storage-cost.ts). */
export function entrySize(
  pluginId: string,
  key: string,
  value: Uint8Array,
  pageBytes = DEFAULT_STORAGE_PAGE_BYTES,
): number {
  return storageEntryCost(pluginId, key, value.byteLength, pageBytes);
}

export function checkQuota(pluginId: string, used: number, quotaBytes: number): void {
  if (used > quotaBytes) {
    throw new ReedError(
      'storage_quota_exceeded',
      `plugin "${pluginId}" would use ${used} bytes of storage, above its quota of ${quotaBytes} bytes (limits.storage_quota_bytes)`,
      { pluginId },
    );
  }
}

/** Content kept in memory; a CMS plugs in its own. */
export class MemoryContentService implements ContentService {
  readonly #items = new Map<string, ContentItem>();
  readonly #usage = new Map<string, ContentUsage>();
  #next = 1;

  create(pluginId: string, type: string, data: unknown, bytes: number): string {
    const id = `content-${this.#next++}`;
    this.#items.set(id, { id, type, data, createdBy: pluginId });
    const used = this.usage(pluginId);
    this.#usage.set(pluginId, { items: used.items + 1, bytes: used.bytes + bytes });
    return id;
  }

  get(id: string): ContentItem | undefined {
    return this.#items.get(id);
  }

  usage(pluginId: string): ContentUsage {
    return this.#usage.get(pluginId) ?? { items: 0, bytes: 0 };
  }
}

/** Synchronous in-process event bus. A throwing subscriber is isolated from the emitter and the others. */
export class MemoryEventBus implements EventBus {
  readonly #subscribers = new Set<{ match: (topic: string) => boolean; handler: (e: PluginEvent) => void }>();
  onSubscriberError: (error: unknown, event: PluginEvent) => void = () => {};

  emit(event: PluginEvent): void {
    const frozen = Object.freeze({ ...event });
    for (const s of this.#subscribers) {
      if (!s.match(event.topic)) continue;
      try {
        s.handler(frozen);
      } catch (error) {
        this.onSubscriberError(error, frozen);
      }
    }
  }

  subscribe(pattern: string, handler: (event: PluginEvent) => void): () => void {
    // Never a regex: a pattern like a*a*a*...b backtracks catastrophically (issue 10, class 5).
    const entry = { match: (topic: string) => matchTopic(pattern, topic), handler };
    this.#subscribers.add(entry);
    return () => this.#subscribers.delete(entry);
  }
}
