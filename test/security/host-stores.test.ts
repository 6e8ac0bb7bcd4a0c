// Issue 10, class 7: everything a plugin can make the host keep or build in memory is bounded, with a code,
// in mode none and in process mode (where the same host-side checks answer the runner's host calls).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { type LogLine, startHost } from '../helpers/host.js';

const DIR = join(REPO, 'test/fixtures/hostile/wasm-runtime');
const ID = 'hostile.wr.stores';

describe.each(['none', 'process'] as const)('host-side stores, mode %s', (mode) => {
  let host: PluginHost;
  let logs: LogLine[];
  beforeAll(async () => {
    ({ host, logs } = await startHost([DIR], { mode, plugins: [ID] }));
  });
  afterAll(() => host.close());

  const fails = async (fn: string, code: string) => {
    await expect(host.call(ID, fn, '')).rejects.toMatchObject({ code });
    // The plugin is still served (a fresh instance), and the host with it.
    await expect(host.call(ID, 'ok', '')).resolves.toBeDefined();
  };

  it('content: data nested past the JSON depth cap is refused (before any quota is used up)', async () => {
    await fails('content_deep', 'invalid_argument');
  });

  it('content: the item count stops at limits.content_quota_items, and stays stopped', async () => {
    await fails('content_many', 'content_quota_exceeded');
    await fails('content_many', 'content_quota_exceeded');
  });

  it('content: bytes stop at limits.content_quota_bytes', async () => {
    await fails('content_big', 'content_quota_exceeded');
  });

  it('events: data above the event data cap is refused', async () => {
    await fails('event_big', 'argument_too_large');
  });

  it.each(['list_prefix', 'content_id', 'config_key'])(
    '%s: a 1 MiB key, id or prefix is refused before any lookup',
    async (fn) => {
      await fails(fn, 'argument_too_large');
    },
  );

  it('config_key from a plugin without host calls (answered by the runner itself in process mode)', async () => {
    const { host: own } = await startHost([DIR], { mode, plugins: ['hostile.wr.config-only'] });
    try {
      await expect(own.call('hostile.wr.config-only', 'config_key', '')).rejects.toMatchObject({
        code: 'argument_too_large',
      });
    } finally {
      await own.close();
    }
  });

  it('log: a 1 MiB line is kept only up to limits.log_line_bytes', async () => {
    await host.call(ID, 'log_long', '');
    const line = logs.filter((l) => l.pluginId === ID && l.msg.startsWith('aaaa')).at(-1);
    expect(line).toBeDefined();
    expect(Buffer.byteLength(line?.msg ?? '')).toBeLessThanOrEqual(1024 + 32);
  });
});
