import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage, type PluginEvent } from '../../src/host/services.js';
import { REPO } from '../helpers/cli.js';
import { text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

describe('the native example through every host callback (trusted, mode none)', () => {
  let host: PluginHost;
  const storage = new MemoryStorage();
  const events: PluginEvent[] = [];
  beforeAll(async () => {
    const config = loadHostConfig({
      file: join(REPO, 'examples/reed-trusted.toml'),
      env: {},
      home: tempDir(),
    });
    config.runtimeDir = tempDir();
    host = await PluginHost.start({
      config,
      logger: pino({ level: 'silent' }),
      services: { storage },
      plugins: ['example.native-c'],
    });
    host.services.events.subscribe('notes.*', (e) => events.push(e));
  });
  afterAll(() => host.close());

  it('stores, lists, deletes, publishes, and emits events with its own id', async () => {
    expect(host.status()).toEqual([
      expect.objectContaining({ id: 'example.native-c', state: 'ready', type: 'native' }),
    ]);
    await host.call('example.native-c', 'put', 'title=native note');
    expect(text((await host.call('example.native-c', 'get', 'title')).output)).toBe('native note');
    expect(text(storage.get('example.native-c', 'title') ?? new Uint8Array())).toBe('native note');
    expect(events.at(-1)).toEqual({
      topic: 'notes.saved',
      data: { key: 'title' },
      source: 'example.native-c',
    });
    await host.call('example.native-c', 'put', 'todo=x');
    expect(text((await host.call('example.native-c', 'list', 't')).output)).toBe('title\ntodo\n');
    await host.call('example.native-c', 'delete', 'todo');
    await expect(host.call('example.native-c', 'delete', 'todo')).rejects.toMatchObject({
      code: 'plugin_error',
      details: { pluginCode: 'not_found' },
    });
    const item = JSON.parse(text((await host.call('example.native-c', 'publish', 'hi')).output));
    expect(item).toMatchObject({ type: 'note', data: { text: 'hi' }, createdBy: 'example.native-c' });
    await expect(host.call('example.native-c', 'nope')).rejects.toMatchObject({ code: 'function_not_found' });
  });

  it('keeps its state between calls (one instance)', async () => {
    const before = Number(text((await host.call('example.native-c', 'calls')).output));
    await host.call('example.native-c', 'echo', 'x');
    expect(Number(text((await host.call('example.native-c', 'calls')).output))).toBe(before + 2);
  });
});
