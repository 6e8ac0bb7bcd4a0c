import type { Logger } from 'pino';
import { ReedError } from '../errors.js';
import { jsonTooDeep, MAX_DATA_DEPTH } from '../manifest/config-check.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import { patternCovers } from '../manifest/topic-pattern.js';
import type { AccessLevel, PluginPermissions } from '../manifest/types.js';
import {
  HOST_FUNCTIONS,
  type HostApi,
  type HostApiName,
  type HostArg,
  type HostFunction,
  MAX_CONTENT_TYPE_BYTES,
  MAX_KEY_BYTES,
} from '../runtime/host-api.js';
import { checkArgumentSizes, configurationJson } from '../runtime/host-api-calls.js';
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
 * sandbox mode. The plugin's id comes from the host, never from the plugin, so it cannot act as another. Each
 * method is its implementation behind #checked, which applies what the function's row of the host API table
 * (src/runtime/host-api.ts) says: argument caps, then the permission.
 */
export class PluginHostApi implements HostApi {
  /** The plugin's logger, made on its first line: most plugins never log, and a host may hold ten thousand. */
  #logger: Logger | undefined;
  readonly #parentLogger: Logger;
  readonly #rate: LogRate;

  constructor(
    readonly pluginId: string,
    readonly permissions: PluginPermissions,
    readonly limits: ResolvedLimits,
    readonly configuration: Record<string, unknown>,
    readonly services: HostServices,
    logger: Logger,
  ) {
    this.#parentLogger = logger;
    this.#rate = new LogRate(limits.logLinesPerSecond);
  }

  get #log(): Logger {
    this.#logger ??= this.#parentLogger.child({ pluginId: this.pluginId, source: 'plugin' });
    return this.#logger;
  }

  readonly log = this.#checked('log', (level, message) => {
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
  });

  readonly storage_get = this.#checked('storage_get', (key) =>
    this.services.storage.get(this.pluginId, this.#storageKey(key)),
  );

  readonly storage_put = this.#checked('storage_put', (key, value) => {
    this.services.storage.put(this.pluginId, this.#storageKey(key), value, this.limits.storageQuotaBytes);
  });

  readonly storage_delete = this.#checked('storage_delete', (key) =>
    this.services.storage.delete(this.pluginId, this.#storageKey(key)),
  );

  readonly storage_list = this.#checked('storage_list', (prefix) =>
    this.services.storage.list(this.pluginId, prefix, MAX_LIST),
  );

  readonly content_create = this.#checked('content_create', (type, data) => {
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
  });

  readonly content_get = this.#checked('content_get', (id) => {
    const item = this.services.content.get(id);
    return item === undefined ? undefined : JSON.stringify(item);
  });

  readonly event_emit = this.#checked('event_emit', (topic, data) => {
    this.services.events.emit({
      topic,
      data: data === '' ? null : this.#json(data, 'event data'),
      source: this.pluginId,
    });
  });

  /**
   * Each configuration key's answer, made once (the configuration does not change under a host API): serializing a
   * value costs up to ~230 ns a byte (an array of 31k integers took 7.2 ms a get), which a plugin calling config_get
   * in a loop would otherwise make the host pay at every call. Only keys that exist are kept: bounded by the
   * manifest's configuration.
   */
  readonly #configJson = new Map<string, string>();

  readonly config_get = this.#checked('config_get', (key) => {
    const known = this.#configJson.get(key);
    if (known !== undefined) return known;
    const json = configurationJson(this.configuration, key);
    if (json !== undefined) this.#configJson.set(key, json);
    return json;
  });

  /**
   * `run` behind the checks of `name`'s row: every argument measured against its cap before anything is done
   * with it (topic matching included: the matcher is linear, but in the topic's length times the patterns),
   * then the permission. A log line without permissions.log is dropped, not refused (as in the seed).
   */
  #checked<N extends HostApiName>(name: N, run: HostApi[N]): HostApi[N] {
    const row: HostFunction = HOST_FUNCTIONS[name];
    const implementation = run as (...args: HostArg[]) => unknown;
    const checked = (...args: HostArg[]): unknown => {
      checkArgumentSizes(this.pluginId, name, args);
      const permission = row.permission;
      if (permission?.kind === 'log' && !this.permissions.log) return undefined;
      if (permission?.kind === 'access') this.#need(permission.field, permission.level, permission.action);
      if (permission?.kind === 'topic') this.#mayEmit(String(args[0]));
      return implementation(...args);
    };
    return checked as HostApi[N];
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

  #mayEmit(topic: string): void {
    if (!this.permissions.events.emit.some((allowed) => patternCovers(allowed, topic)) || topic.includes('*'))
      this.#deny(`emit event "${escapeUnprintable(topic)}"`, 'events.emit');
  }

  /** A storage key beyond its size: not empty, no NUL. */
  #storageKey(key: string): string {
    if (key.length === 0 || key.includes('\0')) {
      throw new ReedError('invalid_argument', `storage key must be 1-${MAX_KEY_BYTES} bytes without NUL`, {
        pluginId: this.pluginId,
      });
    }
    return key;
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
