// Scale to zero in mode none (issue 16, part 2): the WASM instance and its memory are dropped after idle_timeout,
// made again on the next call (test/helpers/idle.ts). And the state `idle` where operators read it: the API's
// status and the reed_plugin_state gauge.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleMap as samples } from '../../src/cli/prom-text.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { createApiServer, listenOnSocket } from '../../src/server/api-server.js';
import { ReedMetrics } from '../../src/server/metrics.js';
import { api } from '../helpers/api.js';
import { REPO } from '../helpers/cli.js';
import { startHost } from '../helpers/host.js';
import { IDLE_PLUGIN, idleSuite, until } from '../helpers/idle.js';
import { tempDir } from '../helpers/plugin-tree.js';

describe('scale to zero, mode none', () => {
  idleSuite(
    'none',
    {
      // Nothing runs apart from the host: no instance, so no memory reported.
      async nothingRuns(_host, sandbox) {
        expect(sandbox.usage?.()).toBeUndefined();
      },
    },
    60_000,
  );
});

describe('the state idle, where it is read', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('the API status and the reed_plugin_state gauge say idle, then ready after a call through the API, counted as a wake', async () => {
    let started: PluginHost | undefined;
    // Subscribed before the load: the load tells the metrics the plugin's runtime.
    const metrics = new ReedMetrics({
      targets: () => (started === undefined ? [] : [{ tenant: 'default', host: started }]),
    });
    cleanups.push(() => metrics.close());
    const { host } = await startHost([join(REPO, 'test/fixtures/idle')], { mode: 'none' });
    started = host;
    cleanups.push(() => host.close());
    const server = createApiServer(host, { maxInputBytes: 1024 });
    const socketPath = join(tempDir('reed-idle-api-'), 'api.sock');
    await listenOnSocket(server, socketPath);
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const l = `tenant="default",plugin="${IDLE_PLUGIN}",mode="none"`;

    await until(() => host.pluginStatus(IDLE_PLUGIN).state === 'idle', 'the plugin to idle');
    const status = await api(socketPath, 'GET', `/v1/plugins/${IDLE_PLUGIN}`);
    expect(status.status).toBe(200);
    expect(status.body.plugin?.state).toBe('idle');
    const listed = await api(socketPath, 'GET', '/v1/plugins');
    expect(listed.body.plugins?.find((p) => p.id === IDLE_PLUGIN)?.state).toBe('idle');
    let s = samples(await metrics.text());
    expect(s.get(`reed_plugin_state{${l},state="idle"}`)).toBe(1);
    expect(s.get(`reed_plugin_state{${l},state="ready"}`)).toBe(0);

    const call = await api(socketPath, 'POST', `/v1/plugins/${IDLE_PLUGIN}/call/echo`, 'awake');
    expect(call.status).toBe(200);
    expect(call.body.output).toBe('awake');
    // Awake again (or, on a machine slow enough to leave 200 ms between two requests, idle once more).
    const after = (await api(socketPath, 'GET', `/v1/plugins/${IDLE_PLUGIN}`)).body.plugin?.state;
    expect(['ready', 'idle']).toContain(after);
    s = samples(await metrics.text());
    const now = host.pluginStatus(IDLE_PLUGIN).state;
    expect(s.get(`reed_plugin_state{${l},state="${now}"}`)).toBe(1);
    // The wake is a start, with its cold start (from the call that woke it to ready).
    expect(s.get(`reed_sandbox_starts_total{${l},runtime="wasm",reason="wake"}`)).toBeGreaterThanOrEqual(1);
    expect(s.get(`reed_cold_start_seconds_count{${l},reason="wake"}`)).toBeGreaterThanOrEqual(1);
  });

  it("reed.toml's [sandbox] idle_timeout applies to a plugin whose manifest sets none", async () => {
    const { host } = await startHost([join(REPO, 'examples/plugins')], {
      mode: 'none',
      plugins: ['example.hello'],
      reedToml: '[sandbox]\nidle_timeout = "200ms"\n',
    });
    cleanups.push(() => host.close());
    expect(host.pluginStatus('example.hello').state).toBe('ready');
    await until(() => host.pluginStatus('example.hello').state === 'idle', 'example.hello to idle');
    const { output } = await host.call('example.hello', 'greet', 'again');
    expect(new TextDecoder().decode(output)).toContain('again');
  });
});
