import { join } from 'node:path';
import { checkFilesystemSpec, type PluginSpec } from '../src/protocol/messages.js';
import type { HostApi } from '../src/runtime/host-api.js';
import type { PluginRuntime } from '../src/runtime/runtime.js';
import { FUEL_PER_ROUND_TRIP } from '../src/runtime/wasm/abi.js';
import type { QuotaLeases } from '../src/runtime/wasm/quota-leases.js';

/**
 * The plugin's runtime, built from the host's Welcome (its spec and the checked bytes) and initialised: one place
 * for the runner's main thread (a plugin without host calls) and its worker. The same runtime code as mode
 * `none`; each is imported only when used (koffi costs ~15 ms to load).
 */
export async function startRuntime(
  spec: PluginSpec,
  bytes: Uint8Array,
  host: HostApi,
  workDir: string,
  leases?: QuotaLeases,
): Promise<PluginRuntime> {
  let runtime: PluginRuntime;
  if (spec.type === 'wasm') {
    // The data directory as mounted here (RUNNER_DATA_DIR), when the plugin was granted one: checked, never guessed.
    const filesystem = checkFilesystemSpec(spec.filesystem, spec.id);
    const { loadWasi, WasmPlugin } = await import('../src/runtime/wasm/wasm-plugin.js');
    const module = new WebAssembly.Module(bytes);
    await loadWasi(module); // only for a module that imports WASI
    runtime = new WasmPlugin({
      pluginId: spec.id,
      module,
      exports: spec.exports ?? [],
      isCommand: spec.isCommand ?? false,
      host,
      limits: spec.limits,
      wasi: spec.wasi,
      ...(typeof spec.logLevel === 'string' ? { logLevel: spec.logLevel } : {}),
      ...(filesystem === undefined
        ? {}
        : {
            filesystem: leases === undefined || filesystem.readOnly ? filesystem : { ...filesystem, leases },
          }),
      // Its calls that ask the host cross the runner's socket: each pays the round trip's price too.
      roundTripFuel: FUEL_PER_ROUND_TRIP,
    });
  } else {
    // Before the library's code runs: its constructors run at load. (koffi is loaded here anyway.)
    if (process.platform === 'linux') (await import('./confine.js')).denyTracing();
    const { NativePlugin } = await import('../src/runtime/native/native-plugin.js');
    runtime = new NativePlugin({
      pluginId: spec.id,
      bytes,
      privateDir: join(workDir, 'native'),
      host,
      limits: spec.limits,
      hostApiVersion: spec.apiVersion,
    });
  }
  runtime.init();
  return runtime;
}
