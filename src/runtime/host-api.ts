// Size caps on what a plugin passes the host (issue 10, class 7), part of the host API's contract: each is
// checked before any lookup or parse and reported as `argument_too_large` (by PluginHostApi; config_get's key
// also by the WASM runtime, since a runner answers config_get itself). Storage values count against
// storage_quota_bytes, content against content_quota_bytes/items, log lines against the log limits.
/** Storage keys and prefixes, and configuration keys. */
export const MAX_KEY_BYTES = 1_024;
/** Content ids (the host makes them; anything longer is not one). */
export const MAX_CONTENT_ID_BYTES = 256;
export const MAX_CONTENT_TYPE_BYTES = 200;
/** Event data: an event is delivered synchronously to every subscriber, so its size is bounded per emit. */
export const MAX_EVENT_DATA_BYTES = 1_048_576;

/**
 * What a runtime may ask the host for, on behalf of one plugin. Synchronous: a WASM plugin calls it in the
 * middle of its own execution. Implemented on the host side by PluginHostApi, which checks permissions and
 * limits; in process and container modes the runner forwards these calls to the host over the socket.
 * Methods throw ReedError (`permission_denied`, `storage_quota_exceeded`, `invalid_argument`, ...).
 */
export interface HostApi {
  /** level: 0 debug, 1 info, 2 warn, 3 error (others count as info, as in the seed). */
  log(level: number, message: string): void;
  storageGet(key: string): Uint8Array | undefined;
  storagePut(key: string, value: Uint8Array): void;
  storageDelete(key: string): boolean;
  storageList(prefix: string): string[];
  /** `data` is JSON text; returns the new content id. */
  contentCreate(type: string, data: string): string;
  /** The item as JSON text (`{"id","type","data","createdBy"}`), or undefined. */
  contentGet(id: string): string | undefined;
  /** `data` is JSON text (may be empty for no data). */
  eventEmit(topic: string, data: string): void;
  /** The plugin's `[configuration]` value at `key` as JSON text (`""`: the whole table), or undefined. */
  configGet(key: string): string | undefined;
}
