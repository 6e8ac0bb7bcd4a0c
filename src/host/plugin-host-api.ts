import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import { jsonTooDeep, MAX_DATA_DEPTH } from '../manifest/config-check.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import { MAX_TOPIC_LENGTH, patternCovers } from '../manifest/topic-pattern.js';
import type { AccessLevel, PluginPermissions } from '../manifest/types.js';
import {
  type HostApi,
  MAX_CONTENT_ID_BYTES,
  MAX_CONTENT_TYPE_BYTES,
  MAX_EVENT_DATA_BYTES,
  MAX_KEY_BYTES,
} from '../runtime/host-api.js';
import { LogRate } from '../runtime/log-rate.js';
import { escapeUnprintable } from '../safe-text.js';
import type { ContentService, EventBus, StorageService } from './services.js';

export interface HostServices {
  storage: StorageService;
  content: ContentService;
  events: EventBus;
}

/** Keys per storage_list answer. */
const MAX_LIST = 10_000;
const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * The host API for one plugin: every permission check and quota lives here, on the host side, whatever the
 * sandbox mode. The plugin's id comes from the host, never from the plugin, so it cannot act as another.
 */
export class PluginHostApi implements HostApi {
  readonly #log: Logger;
  readonly #rate: LogRate;

  constructor(
    readonly pluginId: string,
    readonly permissions: PluginPermissions,
    readonly limits: ResolvedLimits,
    readonly configuration: Record<string, unknown>,
    readonly services: HostServices,
    logger: Logger,
  ) {
    this.#log = logger.child({ pluginId, source: 'plugin' });
    this.#rate = new LogRate(limits.logLinesPerSecond);
  }

  #deny(what: string, field: string): never {
    throw new ReedError(
      'permission_denied',
      `plugin "${this.pluginId}" may not ${what}: its manifest does not ask for it (permissions.${field})`,
      { pluginId: this.pluginId, field: `permissions.${field}` },
    );
  }

  #need(field: 'storage' | 'content', level: Exclude<AccessLevel, 'none'>, what: string): void {
    const granted = this.permissions[field];
    if (granted === 'none' || (level === 'readwrite' && granted !== 'readwrite')) this.#deny(what, field);
  }

  #key(key: string): string {
    this.#cap(key, MAX_KEY_BYTES, 'storage key');
    if (key.length === 0 || key.includes('\0')) {
      throw new ReedError('invalid_argument', `storage key must be 1-${MAX_KEY_BYTES} bytes without NUL`, {
        pluginId: this.pluginId,
      });
    }
    return key;
  }

  /** Refuses `value` above `cap` bytes (the length test first: a string's UTF-8 length is at least its length). */
  #cap(value: string, cap: number, what: string): void {
    if (value.length > cap || Buffer.byteLength(value) > cap) {
      throw new ReedError(
        'argument_too_large',
        `plugin "${this.pluginId}" passed ${what} of ${Buffer.byteLength(value)} bytes; the host takes at most ${cap}`,
        { pluginId: this.pluginId },
      );
    }
  }

  log(level: number, message: string): void {
    if (!this.permissions.log) return;
    const admitted = this.#rate.admit((dropped) =>
      this.#log.warn(
        { dropped },
        `dropped ${dropped} log lines over the rate cap (limits.log_lines_per_second)`,
      ),
    );
    if (!admitted) return;
    const cap = this.limits.logLineBytes;
    // Cut by characters first (each is at least one byte), so a huge message is never encoded whole; then
    // escaped, so that a line can neither paint a terminal nor start a line of its own (src/safe-text.ts).
    let text = escapeUnprintable(message.length > cap ? message.slice(0, cap + 1) : message);
    if (Buffer.byteLength(text) > cap) {
      text = `${Buffer.from(text).subarray(0, cap).toString('utf8')}... [truncated]`;
    }
    this.#log[LEVELS[level] ?? 'info'](text);
  }

  storageGet(key: string): Uint8Array | undefined {
    this.#need('storage', 'read', 'read storage');
    return this.services.storage.get(this.pluginId, this.#key(key));
  }

  storagePut(key: string, value: Uint8Array): void {
    this.#need('storage', 'readwrite', 'write storage');
    this.services.storage.put(this.pluginId, this.#key(key), value, this.limits.storageQuotaBytes);
  }

  storageDelete(key: string): boolean {
    this.#need('storage', 'readwrite', 'write storage');
    return this.services.storage.delete(this.pluginId, this.#key(key));
  }

  storageList(prefix: string): string[] {
    this.#need('storage', 'read', 'read storage');
    this.#cap(prefix, MAX_KEY_BYTES, 'a storage prefix');
    return this.services.storage.list(this.pluginId, prefix, MAX_LIST);
  }

  contentCreate(type: string, data: string): string {
    this.#need('content', 'readwrite', 'create content');
    this.#cap(type, MAX_CONTENT_TYPE_BYTES, 'a content type');
    if (type.length === 0)
      throw new ReedError('invalid_argument', `content type must be 1-${MAX_CONTENT_TYPE_BYTES} bytes`, {
        pluginId: this.pluginId,
      });
    // The quota is checked before the data is parsed: a refused item costs the host no more than its scan.
    const bytes = Buffer.byteLength(type) + Buffer.byteLength(data);
    const used = this.services.content.usage(this.pluginId);
    const { contentQuotaItems, contentQuotaBytes } = this.limits;
    if (used.items + 1 > contentQuotaItems || used.bytes + bytes > contentQuotaBytes) {
      throw new ReedError(
        'content_quota_exceeded',
        `plugin "${this.pluginId}" would hold ${used.items + 1} content items of ${used.bytes + bytes} bytes, above its quota of ${contentQuotaItems} items (limits.content_quota_items) or ${contentQuotaBytes} bytes (limits.content_quota_bytes)`,
        { pluginId: this.pluginId },
      );
    }
    return this.services.content.create(this.pluginId, type, this.#json(data, 'content data'), bytes);
  }

  contentGet(id: string): string | undefined {
    this.#need('content', 'read', 'read content');
    this.#cap(id, MAX_CONTENT_ID_BYTES, 'a content id');
    const item = this.services.content.get(id);
    return item === undefined ? undefined : JSON.stringify(item);
  }

  eventEmit(topic: string, data: string): void {
    // Before matching: the matcher is linear, but in the topic's length times the manifest's patterns.
    this.#cap(topic, MAX_TOPIC_LENGTH, 'an event topic');
    if (
      !this.permissions.events.emit.some((allowed) => patternCovers(allowed, topic)) ||
      topic.includes('*')
    ) {
      this.#deny(`emit event "${escapeUnprintable(topic)}"`, 'events.emit');
    }
    this.#cap(data, MAX_EVENT_DATA_BYTES, 'event data');
    this.services.events.emit({
      topic,
      data: data === '' ? null : this.#json(data, 'event data'),
      source: this.pluginId,
    });
  }

  configGet(key: string): string | undefined {
    this.#cap(key, MAX_KEY_BYTES, 'a configuration key');
    if (key === '') return JSON.stringify(this.configuration, bigintSafe);
    if (!Object.hasOwn(this.configuration, key)) return undefined;
    return JSON.stringify(this.configuration[key], bigintSafe);
  }

  #json(text: string, what: string): unknown {
    // Nesting is refused before parsing: a deep value would overflow the stack of whoever stringifies it later.
    if (jsonTooDeep(text)) {
      throw new ReedError(
        'invalid_argument',
        `${what} from plugin "${this.pluginId}" nests deeper than ${MAX_DATA_DEPTH} levels`,
        { pluginId: this.pluginId },
      );
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new ReedError('invalid_argument', `${what} from plugin "${this.pluginId}" is not valid JSON`, {
        pluginId: this.pluginId,
      });
    }
  }
}

function bigintSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
