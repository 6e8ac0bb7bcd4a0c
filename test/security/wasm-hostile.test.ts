import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost } from '../helpers/host.js';
import { manifestToml, tempDir } from '../helpers/plugin-tree.js';

const HOSTILE = join(REPO, 'test/fixtures/hostile');

// Each hostile call: the typed error it must produce. After each one the host must still serve the same
// plugin (a fresh instance) and the other plugins.
const CALLS: [plugin: string, fn: string, code: string, input?: string][] = [
  ['spin', 'spin', 'fuel_exhausted'],
  ['slow', 'chatter', 'call_timeout'],
  ['recursion', 'recurse', 'wasm_stack_overflow'],
  ['big-output', 'flood', 'output_too_large'],
  ['quota', 'fill', 'storage_quota_exceeded'],
  ['no-permission', 'read', 'permission_denied'],
  ['no-permission', 'emit', 'permission_denied'],
  ['memory-grow', 'grow', 'plugin_error'],
  ...[
    'log',
    'input_read',
    'output_write',
    'error_set',
    'storage_get',
    'storage_get_buffer',
    'storage_put',
    'storage_delete',
    'storage_list',
    'content_create',
    'content_get',
    'event_emit',
    'config_get',
    'wasi_fd_write',
    'wasi_random_get',
  ].map((fn): [string, string, string, string] => [
    'out-of-bounds',
    fn,
    'wasm_out_of_bounds',
    'x'.repeat(200),
  ]),
];

// Plugins that must fail to load, with the code they fail with.
const LOAD_FAILURES: [plugin: string, code: string][] = [
  ['start-loop', 'fuel_exhausted'],
  ['big-initial', 'wasm_memory_limit'],
  ['big-table', 'wasm_table_limit'],
  ['unknown-import', 'wasm_import_unknown'],
  ['wrong-signature', 'wasm_import_signature'],
  ['init-trap', 'init_failed'],
  ['init-error', 'init_failed'],
  ['malformed', 'wasm_invalid'],
];

describe('hostile WASM plugins (mode none)', () => {
  let host: PluginHost;
  let logs: LogLine[];
  beforeAll(async () => {
    ({ host, logs } = await startHost([HOSTILE], { reedToml: '[limits]\nfuel_per_call = 50000000\n' }));
  });
  afterAll(() => host.close());

  it.each(CALLS)(
    '%s.%s -> %s, and everything still works afterwards',
    async (plugin, fn, code, input = '') => {
      await expect(host.call(`hostile.${plugin}`, fn, input)).rejects.toMatchObject({
        code,
        pluginId: `hostile.${plugin}`,
      });
      expect((await host.call(`hostile.${plugin}`, 'ok')).output).toHaveLength(0);
      await expect(host.call('hostile.max-pages', 'ok')).resolves.toBeDefined();
    },
  );

  it.each(LOAD_FAILURES)('%s fails to load with %s; calls get plugin_failed', async (plugin, code) => {
    const status = host.status().find((s) => s.id === `hostile.${plugin}`);
    expect(status).toMatchObject({ state: 'failed', error: { code } });
    await expect(host.call(`hostile.${plugin}`, 'ok')).rejects.toMatchObject({ code: 'plugin_failed' });
  });

  it('caps memory: growth toward 4 GiB stops at the cap, also for a declared 65,536-page maximum', async () => {
    const steps = await host.call('hostile.memory-grow', 'grow_steps');
    expect(Buffer.from(steps.output).readUInt32LE(0)).toBe(1024); // 64 MiB in 64 KiB pages
    await expect(host.call('hostile.max-pages', 'ok')).resolves.toBeDefined();
  });

  it('reports the plugin\u2019s own error code', async () => {
    await expect(host.call('hostile.memory-grow', 'grow')).rejects.toMatchObject({
      details: { pluginCode: 'oom' },
    });
  });

  it('gives no filesystem to WASI without a grant: there is no preopen, so path_open on fd 3 answers EBADF', async () => {
    const { output } = await host.call('hostile.wasi-fs', 'open');
    expect(Buffer.from(output).readUInt32LE(0)).toBe(8);
  });

  it('logs invalid UTF-8 with replacement characters, cuts long lines, and drops a flood over the rate cap', async () => {
    await host.call('hostile.bad-log', 'invalid_utf8');
    const bad = logs.filter((l) => l.pluginId === 'hostile.bad-log').at(-1);
    expect(bad?.msg).toContain('\ufffd');
    await host.call('hostile.bad-log', 'long_line');
    const long = logs.filter((l) => l.pluginId === 'hostile.bad-log').at(-1);
    expect(long?.msg.length).toBeLessThan(4200);
    expect(long?.msg).toMatch(/\[truncated\]$/);
    const before = logs.length;
    const started = performance.now();
    await host.call('hostile.bad-log', 'flood');
    const seconds = (performance.now() - started) / 1000;
    const kept = logs.slice(before).filter((l) => l.pluginId === 'hostile.bad-log');
    // 10,000 lines against a cap of 100 a second: at most 100 in each second window the call touched (a loaded
    // machine stretches the call over more than one), and a "dropped" notice per window.
    const windows = Math.floor(seconds) + 2;
    expect(kept.length).toBeLessThanOrEqual(101 * windows);
    expect(kept.length).toBeLessThan(10_000);
  });

  it('cannot forge another plugin\u2019s id in its log lines', () => {
    for (const line of logs.filter((l) => l.source === 'plugin')) expect(line.pluginId).toMatch(/^hostile\./);
  });
});

describe('module checks before compile', () => {
  const plugin = (dir: string, bytes: Uint8Array) => {
    mkdirSync(join(dir, 'p'), { recursive: true });
    writeFileSync(join(dir, 'p', 'plugin.toml'), manifestToml({ id: 'p', plugin_type: 'wasm' }));
    writeFileSync(join(dir, 'p', 'plugin.wasm'), bytes);
  };

  it('rejects a truncated module with wasm_invalid', async () => {
    const dir = tempDir();
    const whole = readFileSync(join(HOSTILE, 'spin', 'plugin.wasm'));
    plugin(dir, whole.subarray(0, whole.length - 7));
    const { host } = await startHost([dir]);
    expect(host.status()[0]?.error?.code).toBe('wasm_invalid');
    await host.close();
  });

  it('rejects a module above the size cap with wasm_too_large', async () => {
    const dir = tempDir();
    plugin(dir, new Uint8Array(2048));
    const { host } = await startHost([dir], { reedToml: '[wasm]\nmax_module_bytes = 1024\n' });
    expect(host.status()[0]?.error?.code).toBe('wasm_too_large');
    await host.close();
  });

  it('fails a plugin whose dependency failed, and loads the rest', async () => {
    const dir = tempDir();
    for (const name of ['init-trap', 'spin']) {
      mkdirSync(join(dir, name));
      copyFileSync(join(HOSTILE, name, 'plugin.wasm'), join(dir, name, 'plugin.wasm'));
    }
    writeFileSync(join(dir, 'init-trap', 'plugin.toml'), manifestToml({ id: 'base' }));
    writeFileSync(
      join(dir, 'spin', 'plugin.toml'),
      manifestToml({ id: 'user', requirements: { dependencies: [{ id: 'base' }] } }),
    );
    const { host } = await startHost([dir]);
    expect(host.status().map((s) => [s.id, s.state, s.error?.code])).toEqual([
      ['base', 'failed', 'init_failed'],
      ['user', 'failed', 'dependency_invalid'],
    ]);
    await host.close();
  });
});
