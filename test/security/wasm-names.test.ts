import { describe, expect, it } from 'vitest';
import wabtFactory from 'wabt';
import { encodeU32 as u32 } from '../../src/runtime/wasm/binary.js';
import { startHost } from '../helpers/host.js';
import { lastingDir, writePlugin } from '../helpers/plugin-tree.js';

const NAME_BYTES = 4 * 1024 * 1024;

/**
 * A plugin whose functions trap (`boom`) and overflow the stack (`deactivate`), with a `name` custom section that
 * gives every function a 4 MiB name: V8 writes function names into each stack frame of a trap.
 */
async function hugeNamesModule(): Promise<Buffer> {
  const wabt = await wabtFactory();
  const wat = `(module (memory (export "memory") 1)
    (func $deactivate (export "deactivate") (result i32) (call $deactivate))
    (func (export "boom") (result i32) unreachable)
    (func (export "ok") (result i32) (i32.const 0)))`;
  const base = Buffer.from(wabt.parseWat('names.wat', wat).toBinary({}).buffer);
  const name = Buffer.alloc(NAME_BYTES, 0x61);
  const names = [0, 1, 2].flatMap((i) => [...u32(i), ...u32(name.length), ...name]);
  const sub = [1, ...u32(u32(3).length + names.length), ...u32(3), ...names];
  const content = [4, ...Buffer.from('name'), ...sub];
  return Buffer.concat([base, Buffer.from([0, ...u32(content.length), ...content])]);
}

describe("a module's names cannot swell the host's errors and logs", () => {
  it('a trap and a failing deactivate stay small in the error and the log; close() resolves', async () => {
    const root = lastingDir('reed-names-');
    writePlugin(root, 'names', { id: 'hostile.names' }, { 'plugin.wasm': await hugeNamesModule() });
    const { host, logs } = await startHost([root], { reedToml: '[signatures]\nrequire = "none"\n' });
    expect(host.status()[0]).toMatchObject({ state: 'ready' });
    const error = await host.call('hostile.names', 'boom').catch((e: unknown) => e as Error);
    expect(error).toMatchObject({ code: 'wasm_trap' });
    const cause = (error as Error).cause as Error;
    expect(String(cause.stack).length).toBeLessThan(64 * 1024);
    // The next instance: `deactivate` overflows its stack with frames named by the module.
    await host.call('hostile.names', 'ok');
    await expect(host.close()).resolves.toBeUndefined();
    const line = logs.find((l) => l.msg === 'deactivate failed');
    expect(line).toBeDefined();
    expect(JSON.stringify(line).length).toBeLessThan(64 * 1024);
  });
});
