import { DEFAULT_LIMITS, type ResolvedLimits } from '../../src/manifest/limits.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { compileWasm } from '../../src/runtime/wasm/compile-wasm.js';
import { loadWasi, WasmPlugin } from '../../src/runtime/wasm/wasm-plugin.js';

export interface WasiPluginOptions {
  /** The plugin's directory on the host, seen by the guest as `guestName` (default `/data`). */
  hostPath: string;
  guestName?: string;
  readOnly?: boolean;
  diskBytes?: number;
  maxFiles?: number;
  pluginId?: string;
  limits?: Partial<ResolvedLimits>;
  args?: string[];
  env?: Record<string, string>;
  /** Each log line (stderr's included); dropped when not given. */
  log?: (message: string) => void;
  /** Each quota warning (the runtime's `warn`); dropped when not given. */
  warn?: (code: string, message: string) => void;
}

/**
 * A WASI plugin (`wasm`, a reactor or a command) run in mode none on a directory of its own, straight on its
 * runtime (no host): its host API only logs, and any other host call fails the test. Initialised.
 */
export async function wasiPlugin(wasm: string, o: WasiPluginOptions): Promise<WasmPlugin> {
  const pluginId = o.pluginId ?? 'probe';
  const compiled = await compileWasm(wasm, {
    pluginId,
    memoryMb: DEFAULT_LIMITS.memoryMb,
    tableElements: DEFAULT_LIMITS.tableElements,
    fuelPerCall: o.limits?.fuelPerCall ?? DEFAULT_LIMITS.fuelPerCall,
  });
  await loadWasi(compiled.module);
  const host = new Proxy({} as HostApi, {
    get: (_target, name) =>
      name === 'log'
        ? (_level: number, message: string) => o.log?.(message)
        : () => {
            throw new Error(`unexpected host call ${String(name)}`);
          },
  });
  const plugin = new WasmPlugin({
    pluginId,
    module: compiled.module,
    exports: compiled.exports,
    isCommand: compiled.isCommand,
    host,
    limits: { ...DEFAULT_LIMITS, ...o.limits },
    wasi: { args: o.args ?? [], env: o.env ?? {} },
    filesystem: {
      hostPath: o.hostPath,
      guestName: o.guestName ?? '/data',
      readOnly: o.readOnly ?? false,
      diskBytes: o.diskBytes ?? 0,
      maxFiles: o.maxFiles ?? 0,
    },
    warn: (code, message) => o.warn?.(code, message),
  });
  plugin.init();
  return plugin;
}
