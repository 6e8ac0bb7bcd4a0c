import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import type { AccessLevel, PluginPermissions } from '../manifest/types.js';
import type { HostApi } from '../runtime/host-api.js';
import { patternCovers } from '../validation/rules/permission-rule.js';
import type { ResolvedLimits } from './limits.js';
import type { ContentService, EventBus, StorageService } from './services.js';

export interface HostServices {
  storage: StorageService;
  content: ContentService;
  events: EventBus;
}

const MAX_KEY_BYTES = 1_024;
const MAX_LIST = 10_000;
const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * The host API for one plugin: every permission check and quota lives here, on the host side, whatever the
 * sandbox mode. The plugin's id comes from the host, never from the plugin, so it cannot act as another.
 */
export class PluginHostApi implements HostApi {
  readonly #log: Logger;
  #tokens: number;
  #refilledAt = performance.now();
  #dropped = 0;

  constructor(
    readonly pluginId: string,
    readonly permissions: PluginPermissions,
    readonly limits: ResolvedLimits,
    readonly configuration: Record<string, unknown>,
    readonly services: HostServices,
    logger: Logger,
  ) {
    this.#log = logger.child({ pluginId, source: 'plugin' });
    this.#tokens = limits.logLinesPerSecond;
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
    if (key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES || key.includes('\0')) {
      throw new ReedError('invalid_argument', `storage key must be 1-${MAX_KEY_BYTES} bytes without NUL`, {
        pluginId: this.pluginId,
      });
    }
    return key;
  }

  log(level: number, message: string): void {
    if (!this.permissions.log) return;
    const now = performance.now();
    const elapsed = now - this.#refilledAt;
    if (elapsed >= 1_000) {
      if (this.#dropped > 0) {
        this.#log.warn(
          { dropped: this.#dropped },
          `dropped ${this.#dropped} log lines over the rate cap (limits.log_lines_per_second)`,
        );
        this.#dropped = 0;
      }
      this.#tokens = this.limits.logLinesPerSecond;
      this.#refilledAt = now;
    }
    if (this.#tokens <= 0) {
      this.#dropped++;
      return;
    }
    this.#tokens--;
    let text = message;
    if (Buffer.byteLength(text) > this.limits.logLineBytes) {
      text = `${Buffer.from(text).subarray(0, this.limits.logLineBytes).toString('utf8')}... [truncated]`;
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
    return this.services.storage.list(this.pluginId, prefix, MAX_LIST);
  }

  contentCreate(type: string, data: string): string {
    this.#need('content', 'readwrite', 'create content');
    if (type.length === 0 || type.length > 200)
      throw new ReedError('invalid_argument', 'content type must be 1-200 characters');
    return this.services.content.create(this.pluginId, type, this.#json(data, 'content data'));
  }

  contentGet(id: string): string | undefined {
    this.#need('content', 'read', 'read content');
    const item = this.services.content.get(id);
    return item === undefined ? undefined : JSON.stringify(item);
  }

  eventEmit(topic: string, data: string): void {
    if (
      !this.permissions.events.emit.some((allowed) => patternCovers(allowed, topic)) ||
      topic.includes('*')
    ) {
      this.#deny(`emit event "${topic}"`, 'events.emit');
    }
    this.services.events.emit({
      topic,
      data: data === '' ? null : this.#json(data, 'event data'),
      source: this.pluginId,
    });
  }

  configGet(key: string): string | undefined {
    if (key === '') return JSON.stringify(this.configuration, bigintSafe);
    if (!Object.hasOwn(this.configuration, key)) return undefined;
    return JSON.stringify(this.configuration[key], bigintSafe);
  }

  #json(text: string, what: string): unknown {
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
