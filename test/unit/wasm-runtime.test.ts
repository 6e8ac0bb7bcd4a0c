import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import type { PluginEvent } from '../../src/host/services.js';
import { MemoryStorage } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

const EXAMPLES = join(REPO, 'examples/plugins');

describe('the example plugins in mode none', () => {
  let host: PluginHost;
  let logs: LogLine[];
  const storage = new MemoryStorage();
  const events: PluginEvent[] = [];
  beforeAll(async () => {
    ({ host, logs } = await startHost([EXAMPLES], { storage }));
    host.services.events.subscribe('notes.*', (e) => events.push(e));
  });
  afterAll(() => host.close());

  it('loads every example and runs its init', () => {
    expect(host.status().map((s) => [s.id, s.state])).toEqual(
      expect.arrayContaining([
        ['example.hello', 'ready'],
        ['example.notes-c', 'ready'],
        ['example.wordcount', 'ready'],
        ['example.as-greeter', 'ready'],
      ]),
    );
    expect(logs.some((l) => l.pluginId === 'example.hello' && l.msg === 'hello plugin ready')).toBe(true);
    expect(
      logs.some((l) => l.pluginId === 'example.notes-c' && l.msg === 'notes ready, title "My notes"'),
    ).toBe(true);
  });

  it('WAT: greets, echoes 64 bytes, and reads its configuration', async () => {
    expect(text((await host.call('example.hello', 'greet', 'world')).output)).toBe('Hello, world!');
    const input = 'x'.repeat(64);
    expect(text((await host.call('example.hello', 'echo', input)).output)).toBe(input);
    expect(text((await host.call('example.hello', 'greeting')).output)).toBe('"Hello"');
  });

  it('charges the same fuel for the same work, and more for more', async () => {
    const fuel = async (n: number) =>
      (await host.call('example.hello', 'count', 'x'.repeat(n))).stats.fuelConsumed;
    const [a, b, c] = [await fuel(10), await fuel(10), await fuel(20)];
    expect(a).toBe(b);
    expect(c).toBeGreaterThan(a);
    expect(c - a).toBe((await fuel(30)) - c); // linear in the loop count
  });

  it('C (wasm32-wasi): storage, events with the emitter\u2019s id, content, config and WASI stdout to the log', async () => {
    await host.call('example.notes-c', 'put', 'title=first note');
    expect(text((await host.call('example.notes-c', 'get', 'title')).output)).toBe('first note');
    expect(text(storage.get('example.notes-c', 'title') ?? new Uint8Array())).toBe('first note');
    expect(events.at(-1)).toEqual({
      topic: 'notes.saved',
      data: { key: 'title' },
      source: 'example.notes-c',
    });
    await host.call('example.notes-c', 'put', 'todo=x');
    expect(text((await host.call('example.notes-c', 'list', 't')).output)).toBe('title\ntodo\n');
    await host.call('example.notes-c', 'delete', 'todo');
    await expect(host.call('example.notes-c', 'delete', 'todo')).rejects.toMatchObject({
      code: 'plugin_error',
      details: { pluginCode: 'not_found' },
    });
    const published = JSON.parse(text((await host.call('example.notes-c', 'publish', 'hi')).output));
    expect(published).toMatchObject({ type: 'note', data: { text: 'hi' }, createdBy: 'example.notes-c' });
  });

  it('WASI command: _start reads stdin and writes stdout; a non-zero exit is a plugin error with its status', async () => {
    expect(text((await host.call('example.wordcount', '_start', 'one two\nthree\n')).output)).toBe(
      '2 3 14\n',
    );
    await expect(host.call('example.wordcount', '_start', '')).rejects.toMatchObject({
      code: 'plugin_error',
      details: { status: 2 },
    });
    expect(logs.some((l) => l.pluginId === 'example.wordcount' && l.msg === 'wordcount: no input')).toBe(
      true,
    );
    expect(text((await host.call('example.wordcount', '_start', 'again')).output)).toBe('0 1 5\n');
  });

  it('AssemblyScript via the SDK', async () => {
    expect(text((await host.call('example.as-greeter', 'greet', 'Ada')).output)).toBe(
      'Good day, Ada! (from AssemblyScript)',
    );
    await expect(host.call('example.as-greeter', 'greet', '')).rejects.toMatchObject({
      details: { pluginCode: 'empty_name' },
    });
  });

  it('names the functions a plugin has when asked for one it lacks', async () => {
    await expect(host.call('example.hello', 'nope')).rejects.toMatchObject({ code: 'function_not_found' });
    await expect(host.call('example.hello', 'init')).rejects.toMatchObject({ code: 'function_not_found' });
    await expect(host.call('example.hello', '__reed_fuel')).rejects.toMatchObject({
      code: 'function_not_found',
    });
    await expect(host.call('no.such.plugin', 'x')).rejects.toMatchObject({ code: 'plugin_not_loaded' });
  });

  it('passes only the manifest\u2019s WASI args and environment', async () => {
    const { host: wasiHost } = await startHost([join(REPO, 'test/fixtures/wasi')]);
    try {
      expect(text((await wasiHost.call('fixture.wasi-env', 'env')).output)).toBe('GREETING=hi\0LANG=C\0');
      expect(text((await wasiHost.call('fixture.wasi-env', 'args')).output)).toBe(
        'fixture.wasi-env\0--flag\0value\0',
      );
    } finally {
      await wasiHost.close();
    }
  });
});

describe('host lifecycle', () => {
  it('keeps storage across host restarts by default (LMDB under data_dir)', async () => {
    const dir = tempDir();
    const config = loadHostConfig({
      cwd: dir,
      env: {},
      home: dir,
      overrides: { pluginDirs: [EXAMPLES], defaultSearchPaths: false },
    });
    const quiet = pino({ level: 'silent' });
    const first = await PluginHost.start({ config, logger: quiet, plugins: ['example.notes-c'] });
    await first.call('example.notes-c', 'put', 'kept=across restarts');
    await first.close();
    const second = await PluginHost.start({ config, logger: quiet, plugins: ['example.notes-c'] });
    expect(text((await second.call('example.notes-c', 'get', 'kept')).output)).toBe('across restarts');
    await second.close();
  });

  it('runs deactivate in reverse dependency order on close, once', async () => {
    const { host } = await startHost([EXAMPLES], { plugins: ['example.hello'] });
    expect(host.status().map((s) => s.id)).toEqual(['example.hello']);
    await host.close();
    await host.close();
    expect(host.status()[0]?.state).toBe('stopped');
    await expect(host.call('example.hello', 'greet')).rejects.toMatchObject({ code: 'host_closed' });
  });
});
