import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import type { HostApi } from '../../src/runtime/host-api.js';
import { compileWasm } from '../../src/runtime/wasm/compile-wasm.js';
import { loadWasi, WasmPlugin } from '../../src/runtime/wasm/wasm-plugin.js';
import { REPO } from '../helpers/cli.js';

// WASI's implementation (wasi.ts and its file system) is loaded only for a module that imports from it: a runner of
// a plugin that does not is ~2.6 MiB of PSS smaller (README, Benchmarks). The order of these cases matters: WASI is
// loaded once per process, by the first module that needs it.
const example = (name: string) => join(REPO, 'examples/plugins', name, 'plugin.wasm');
const host = new Proxy({} as HostApi, { get: () => () => undefined });

async function make(name: string, load: boolean): Promise<WasmPlugin> {
  const compiled = await compileWasm(example(name), {
    pluginId: `example.${name}`,
    memoryMb: DEFAULT_LIMITS.memoryMb,
    tableElements: DEFAULT_LIMITS.tableElements,
    fuelPerCall: DEFAULT_LIMITS.fuelPerCall,
  });
  if (load) await loadWasi(compiled.module);
  return new WasmPlugin({
    pluginId: `example.${name}`,
    module: compiled.module,
    exports: compiled.exports,
    isCommand: compiled.isCommand,
    host,
    limits: DEFAULT_LIMITS,
    wasi: { args: [], env: {} },
  });
}

describe('WASI is loaded only for a module that imports it', () => {
  it('a module importing nothing of WASI runs without it', async () => {
    const plugin = await make('hello', false);
    plugin.init();
    expect(new TextDecoder().decode(plugin.call('echo', new TextEncoder().encode('hi')).output)).toBe('hi');
  });

  it('a module importing WASI is refused until loadWasi has loaded it, then runs', async () => {
    await expect(make('wordcount', false)).rejects.toThrow('await loadWasi(module) first');
    const plugin = await make('wordcount', true);
    plugin.init();
    const out = plugin.call('_start', new TextEncoder().encode('one two three'));
    expect(new TextDecoder().decode(out.output)).toContain('3');
  });
});
