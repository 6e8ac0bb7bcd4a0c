import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import type { SandboxMode } from '../../src/manifest/types.js';
import { buildAssemblyScriptPlugin, buildCPlugin, EXTISM_FIXTURES, extismPlugin } from '../helpers/extism.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { lastingDir } from '../helpers/plugin-tree.js';

// Unmodified Extism plugins (docs/ABI-wasm.md, "Extism plugins"): ours built from sources by two of Extism's PDKs
// (AssemblyScript and C) and Extism's own published test plugins, called through the whole host in every mode.

const CONFIGURATION = { greeting: 'hi', count: 5, nested: { a: [1, 2] } };
let root: string;

beforeAll(() => {
  root = lastingDir('reed-extism-');
  const built = lastingDir('reed-extism-build-');
  extismPlugin(root, 'extism.as', buildAssemblyScriptPlugin(built), { configuration: CONFIGURATION });
  extismPlugin(root, 'extism.c', buildCPlugin(built), { abi: 'extism', configuration: CONFIGURATION });
  const official = (name: string, fields = {}) =>
    extismPlugin(root, `extism.${name.replace('_', '-')}`, join(EXTISM_FIXTURES, `${name}.wasm`), fields);
  official('code', { configuration: { vowels: 'aeiou' } });
  official('echo');
  official('globals');
  official('loop');
  official('http');
  official('unreachable');
  official('allocations', { limits: { fuel_per_call: 1_000_000_000 } }); // ~33 MB of blocks, each byte charged
  official('consume');
  official('upper');
  official('read_write', {
    permissions: { filesystem: 'read' },
    configuration: { path: '/data/data.txt' },
  });
}, 120_000);

/**
 * A host over the test plugins in `mode`. A runaway loop is stopped by fuel in mode none (the host's thread cannot
 * be interrupted) and by the deadline elsewhere (the fuel is set high enough never to end first).
 */
async function extismHost(mode: SandboxMode, plugins: string[], runtime?: string) {
  const limits =
    mode === 'none' ? 'fuel_per_call = 50000000\n' : 'fuel_per_call = 100000000000\ncall_timeout_ms = 1500\n';
  return startHost([root], {
    mode,
    plugins,
    reedToml: `[signatures]\nrequire = "none"\n[limits]\n${limits}${runtime === undefined ? '' : `[sandbox]\nruntime = "${runtime}"\n`}`,
  });
}

const call = async (host: PluginHost, id: string, fn: string, input = '') =>
  text((await host.call(id, fn, input)).output);

const MODES: [SandboxMode, string | undefined][] = [
  ['none', undefined],
  ['process', undefined],
  ['container', 'runc'],
  ['container', 'runsc'],
];

describe.each(MODES)('plugins built by Extism PDKs, mode %s %s', (mode, runtime) => {
  let host: PluginHost;
  let logs: LogLine[];
  beforeAll(async () => {
    ({ host, logs } = await extismHost(mode, ['extism.as', 'extism.c'], runtime));
    expect(host.status().map((s) => [s.id, s.state])).toEqual([
      ['extism.as', 'ready'],
      ['extism.c', 'ready'],
    ]);
  }, 300_000);
  afterAll(() => host?.close());

  it("extism.as: Host.outputString of non-ASCII text answers its first UTF-16-length bytes, as Extism's kernel does", async () => {
    // The AssemblyScript PDK's outputString allocates the string's length in UTF-16 units, stores its UTF-8 bytes
    // (more of them, for non-ASCII text) and sets the output to the block. Extism's kernel lets the stores past the
    // block through (they stay inside its memory) and answers the block's bytes: the text cut to its UTF-16
    // length in bytes (checked against Extism's compiled kernel). Before, our kernel trapped at the first store
    // past the block (wasm_out_of_bounds).
    for (const input of ['héllo', 'ééééé', 'a€b', `${'x'.repeat(20)}é`, 'plain']) {
      const { output } = await host.call('extism.as', 'echoString', input);
      expect(Buffer.from(output)).toEqual(Buffer.from(input).subarray(0, input.length));
    }
  });

  describe.each(['extism.as', 'extism.c'])('%s', (id) => {
    it('answers with its output', async () => {
      expect(await call(host, id, 'greet', 'you')).toBe('Hello, you!');
      expect(await call(host, id, 'echo', 'x'.repeat(1000))).toBe('x'.repeat(1000));
    });

    it('fails with error_set as plugin_error carrying its message', async () => {
      await expect(host.call(id, 'fail', 'it broke')).rejects.toMatchObject({
        code: 'plugin_error',
        message: `plugin "${id}": it broke`,
        details: { status: 1 },
      });
    });

    it('reads its [configuration]: strings as they are, other values as JSON, a missing key as none', async () => {
      expect(await call(host, id, 'config', 'greeting')).toBe('hi');
      expect(await call(host, id, 'config', 'count')).toBe('5');
      expect(await call(host, id, 'config', 'nested')).toBe('{"a":[1,2]}');
      expect(await call(host, id, 'config', 'absent')).toBe('(none)');
    });

    it('keeps its variables across calls of one instance', async () => {
      const first = Number(await call(host, id, 'count'));
      expect(await call(host, id, 'count')).toBe(String(first + 1));
      expect(await call(host, id, 'count')).toBe(String(first + 2));
    });

    it('keeps its variables when the instance is dropped (a refused http_request), as Extism keeps them in the plugin', async () => {
      const first = Number(await call(host, id, 'count'));
      await expect(host.call(id, 'fetch')).rejects.toMatchObject({ code: 'permission_denied' });
      expect(await call(host, id, 'count')).toBe(String(first + 1));
    });

    it('logs into the plugin log at the right level, and is told the host level', async () => {
      const input = `line-${id}-${mode}-${runtime}`;
      // The test host logs at debug: Extism's 1. Trace lines are below it.
      expect(await call(host, id, 'log', input)).toBe('1');
      await expect.poll(() => logs.filter((l) => l.msg?.endsWith(input)).length).toBe(4);
      const levels = Object.fromEntries(
        logs.filter((l) => l.msg?.endsWith(input)).map((l) => [l.msg.split(':')[0], [l.level, l.pluginId]]),
      );
      expect(levels).toEqual({
        debug: [20, id],
        info: [30, id],
        warn: [40, id],
        error: [50, id],
      });
    });

    it(`stops a runaway loop (${mode === 'none' ? 'fuel' : 'the deadline'}) and serves the next call`, async () => {
      await expect(host.call(id, 'spin')).rejects.toMatchObject({
        code: mode === 'none' ? 'fuel_exhausted' : 'call_timeout',
      });
      expect(await call(host, id, 'greet', 'again')).toBe('Hello, again!');
    }, 30_000);

    it('is refused http_request with a permission code, and the host keeps serving', async () => {
      await expect(host.call(id, 'fetch')).rejects.toMatchObject({
        code: 'permission_denied',
        message: expect.stringMatching(/http_request: outbound HTTP is not a capability/),
      });
      expect(await call(host, id, 'greet', 'still')).toBe('Hello, still!');
    });
  });
});

describe.each(MODES.slice(0, 2))("Extism's own test plugins, mode %s", (mode) => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await extismHost(mode, [
      'extism.code',
      'extism.echo',
      'extism.globals',
      'extism.loop',
      'extism.http',
      'extism.unreachable',
      'extism.allocations',
      'extism.consume',
      'extism.upper',
    ]));
  }, 120_000);
  afterAll(() => host?.close());

  it('loads them all', () => {
    expect(host.status().every((s) => s.state === 'ready')).toBe(true);
  });

  it('count_vowels (Rust PDK): config and a variable across calls', async () => {
    expect(JSON.parse(await call(host, 'extism.code', 'count_vowels', 'Hello, World!'))).toEqual({
      count: 3,
      total: 3,
      vowels: 'aeiou',
    });
    expect(JSON.parse(await call(host, 'extism.code', 'count_vowels', 'aaa'))).toMatchObject({
      count: 3,
      total: 6,
    });
  });

  it('echo and consume: input in, output out', async () => {
    const input = 'x'.repeat(64 * 1024 + 3);
    expect(await call(host, 'extism.echo', 'echo', input)).toBe(input);
    expect(await call(host, 'extism.consume', 'consume', input)).toBe('');
  });

  it("echo.wasm on inputs under 8 bytes answers what Extism's kernel answers: as many zero bytes", async () => {
    // echo.wasm copies its input 8 bytes at a time from offset 0 (input_load_u64), then byte by byte from offset 8,
    // and its output the same way into a block of the input's length (store_u64, store_u8). Under 8 bytes, the
    // first input_load_u64 reaches past the input's end, which Extism's kernel answers with 0 (so does the
    // input_load_u8 at 8), and the store_u64 reaches past the block, which Extism's kernel lets through as it
    // stays inside its memory. So Extism's own runtime answers zeros (checked against its compiled kernel), not
    // the input; before, our kernel trapped (wasm_out_of_bounds).
    for (const input of ['a', 'abc', 'abcdefg']) {
      const { output } = await host.call('extism.echo', 'echo', input);
      expect([...output]).toEqual(new Array(input.length).fill(0));
    }
    expect(await call(host, 'extism.echo', 'echo', 'abcdefgh')).toBe('abcdefgh');
    expect(await call(host, 'extism.echo', 'echo', 'abcdefghijk')).toBe('abcdefghijk');
  });

  it('globals: a WASI reactor whose state lives as long as its instance', async () => {
    const counts = [];
    for (let i = 0; i < 3; i++) counts.push(JSON.parse(await call(host, 'extism.globals', 'globals')).count);
    expect(counts).toEqual([counts[0], counts[0] + 1, counts[0] + 2]);
  });

  it('allocations: 10,000 blocks allocated and freed in one call', async () => {
    expect(await call(host, 'extism.allocations', 'allocations')).toBe('');
  });

  it('loop_forever is stopped; unreachable traps; http_request is refused', async () => {
    await expect(host.call('extism.loop', 'loop_forever', 'x')).rejects.toMatchObject({
      code: mode === 'none' ? 'fuel_exhausted' : 'call_timeout',
    });
    await expect(host.call('extism.unreachable', 'do_unreachable')).rejects.toMatchObject({
      code: 'wasm_trap',
    });
    await expect(
      host.call('extism.http', 'http_request', '{"url":"https://extism.org"}'),
    ).rejects.toMatchObject({ code: 'permission_denied' });
    expect(await call(host, 'extism.echo', 'echo', 'after all that')).toBe('after all that');
  }, 30_000);

  it('a module of host functions only (upper.wasm) loads with nothing to call', async () => {
    await expect(host.call('extism.upper', 'host_reflect')).rejects.toMatchObject({
      code: 'function_not_found',
    });
  });
});

describe.each(MODES.slice(0, 2))("Extism's read_write.wasm with a data directory, mode %s", (mode) => {
  it('reads a file of its directory through WASI, at the path its configuration names, and may not write it', async () => {
    const { host, dir } = await startHost([root], {
      mode,
      plugins: ['extism.read-write'],
      reedToml: '[signatures]\nrequire = "none"\n[policy.permissions]\nfilesystem = "read"\n',
    });
    try {
      // As Extism's own test (runtime.rs, test_readonly_dirs): a read-only directory preopened as /data.
      writeFileSync(join(dir, 'data', 'files', 'extism.read-write', 'data.txt'), 'hello world!');
      expect(await call(host, 'extism.read-write', 'try_read')).toBe('hello world!');
      await expect(host.call('extism.read-write', 'try_write', 'hello world 2')).rejects.toMatchObject({
        code: 'plugin_error',
      });
    } finally {
      await host.close();
    }
  }, 60_000);
});
