import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { CALLS, CONFORMANCE_TOML, MODES } from '../helpers/conformance-cases.js';
import { startHost, text } from '../helpers/host.js';

describe.each(MODES)('conformance in mode $name', ({ mode, reedToml, runnerTransport }) => {
  let host: PluginHost;
  beforeAll(async () => {
    ({ host } = await startHost([join(REPO, 'examples/plugins'), join(REPO, 'test/fixtures/hostile')], {
      reedToml: `${reedToml ?? ''}${CONFORMANCE_TOML}`,
      mode,
      ...(runnerTransport === undefined ? {} : { runnerTransport }),
    }));
  }, 300_000);
  afterAll(() => host.close());

  it.each(CALLS)('%s.%s(%j)', async (plugin, fn, input, expected) => {
    const call = host.call(plugin, fn, input);
    if ('output' in expected) {
      const { output } = await call;
      if (expected.output === 'EBADF') expect(Buffer.from(output).readUInt32LE(0)).toBe(8);
      else expect(text(output)).toContain(expected.output);
    } else {
      await expect(call).rejects.toMatchObject({
        code: expected.code,
        ...(expected.causeCode ? { details: { causeCode: expected.causeCode } } : {}),
      });
    }
  });

  it('runs every loadable plugin in this mode', () => {
    const ready = host.status().filter((s) => s.state === 'ready');
    expect(ready.length).toBeGreaterThan(10);
    for (const s of ready) expect(s.mode).toBe(mode);
  });
});
