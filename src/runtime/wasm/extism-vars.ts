import { ReedError } from '../../errors.js';

/** What each variable counts against limits.extism_var_bytes besides its key and value bytes. */
export const VAR_OVERHEAD_BYTES = 384;

/**
 * An Extism plugin's variables (var_get, var_set), kept by the runtime for the plugin it loaded, not by an
 * instance: as Extism keeps them in its Plugin, they outlive an instance dropped after a trap or a limit, and go
 * with the runtime (the plugin unloaded or replaced, or its runner's process ended). All of them, keys, values and
 * VAR_OVERHEAD_BYTES each, within `quota` (limits.extism_var_bytes).
 */
export class ExtismVars {
  readonly #values = new Map<string, Uint8Array>();
  #bytes = 0;

  constructor(
    readonly pluginId: string,
    readonly quota: number,
  ) {}

  /** The value of the variable named `key` (bytes), if any. */
  get(key: Uint8Array): Uint8Array | undefined {
    return key.length > this.quota ? undefined : this.#values.get(binaryKey(key));
  }

  /**
   * Sets the variable named `key` to a copy of `value` (undefined removes it); extism_var_quota_exceeded, and
   * nothing changed, when all of them would be over the quota. A key over the quota may be given cut to quota + 1
   * bytes (it is refused, or cannot exist, whatever follows).
   */
  set(key: Uint8Array, value: Uint8Array | undefined): void {
    if (value === undefined && key.length > this.quota) return;
    const name = key.length > this.quota ? '' : binaryKey(key);
    const old = this.#values.get(name);
    const oldBytes = old === undefined ? 0 : name.length + old.length + VAR_OVERHEAD_BYTES;
    if (value === undefined) {
      this.#values.delete(name);
      this.#bytes -= oldBytes;
      return;
    }
    const total = this.#bytes - oldBytes + key.length + value.length + VAR_OVERHEAD_BYTES;
    if (total > this.quota) {
      throw new ReedError(
        'extism_var_quota_exceeded',
        `plugin "${this.pluginId}" would hold ${total} bytes of Extism variables, more than ${this.quota} (limits.extism_var_bytes, ${VAR_OVERHEAD_BYTES} bytes counted per variable)`,
        { pluginId: this.pluginId },
      );
    }
    this.#values.set(name, value.slice());
    this.#bytes = total;
  }
}

/** A variable's name as a string that keeps its bytes as they are (one character per byte). */
function binaryKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
