import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// What a host loads that it does not use is heap every garbage collection marks and start time every host pays:
// dockerode and its dependencies (docker-modem, ssh2, @grpc/grpc-js, protobufjs) were a third of a host's heap.
// A built host (dist/) in a process of its own, so that no other test's imports are in its module caches, under
// bubblewrap with an empty /run: no Docker socket, as on a machine without an engine. (With one, the host lists the
// engine's containers over node:http and loads dockerode only to remove what dead hosts left, which another test
// running beside this one may have left at that moment: not a condition a test can hold.)

const ROOT = resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(join(tmpdir(), 'reed-lazy-imports-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const HOST = `
import { createRequire } from 'node:module';
import pino from 'pino';
import { loadHostConfig } from '${ROOT}/dist/src/host/host-config.js';
import { PluginHost } from '${ROOT}/dist/src/host/plugin-host.js';
import { MemoryStorage } from '${ROOT}/dist/src/host/services.js';
const dir = process.argv[1];
const config = loadHostConfig({ cwd: dir, env: {}, home: dir, overrides: {
  pluginDirs: ['${ROOT}/examples/plugins'], defaultSearchPaths: false, sandboxMode: 'none' } });
config.runtimeDir = dir;
config.cacheDir = dir + '/cache';
const host = await PluginHost.start({ config, logger: pino({ level: 'silent' }),
  services: { storage: new MemoryStorage() }, plugins: ['example.hello'], forceMode: 'none' });
const greeting = new TextDecoder().decode((await host.call('example.hello', 'greet', 'x')).output);
await host.close();
// Every CommonJS module loaded (an ES module's import of a CommonJS package loads it through this cache too).
const loaded = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(JSON.stringify({ greeting, loaded }));
`;

describe('a host loads only what its modes need', () => {
  it('a host of mode none plugins never loads dockerode or its dependencies', () => {
    const node = [process.execPath, '--input-type=module', '-e', HOST, scratch];
    const run = spawnSync('bwrap', ['--dev-bind', '/', '/', '--tmpfs', '/run', '--', ...node], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const { greeting, loaded } = JSON.parse(run.stdout) as { greeting: string; loaded: string[] };
    expect(greeting).toBe('Hello, x!');
    // The probe sees CommonJS packages at all: pino is one, and the host loaded it.
    expect(loaded.some((file) => file.includes('/node_modules/pino/'))).toBe(true);
    const docker = loaded.filter((file) =>
      /\/node_modules\/(dockerode|docker-modem|ssh2|@grpc|protobufjs)\//.test(file),
    );
    expect(docker).toEqual([]);
  });
});
