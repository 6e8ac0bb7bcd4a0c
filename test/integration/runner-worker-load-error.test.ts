// The runner's worker (sandbox-runner/worker.ts) reports a plugin that fails to load as one message, and nothing
// else: it used to rethrow the error too, and a worker's uncaught error reaches the main thread by another channel
// than its messages, so it sometimes came first, and the runner told the host sandbox_crashed instead of the
// plugin's own code (seen as init_failed turning into sandbox_crashed in idle-process's failed wake). Runs from
// dist/ (npm run build).
import { join } from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/manifest/limits.js';
import type { PluginSpec } from '../../src/protocol/messages.js';
import { REPO } from '../helpers/cli.js';

describe("the runner's worker, when its plugin does not load", () => {
  it('posts the load error and exits, with no uncaught error beside it', async () => {
    const spec: PluginSpec = {
      id: 'bad.plugin',
      type: 'wasm',
      apiVersion: '1.0.0',
      limits: DEFAULT_LIMITS,
      wasi: { args: [], env: {} },
      hostCalls: true,
      configuration: {},
    };
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(join(REPO, 'dist/runner/worker.js'), {
      workerData: {
        spec,
        bytes: new Uint8Array([1, 2, 3]), // not a WebAssembly module
        flag: new Int32Array(new SharedArrayBuffer(4)),
        hostPort: port2,
        workDir: '/nonexistent',
      },
      transferList: [port2],
    });
    const messages: { type: string; error?: { code?: string } }[] = [];
    const errors: Error[] = [];
    worker.on('message', (m) => messages.push(m));
    worker.on('error', (e) => errors.push(e));
    const code = await new Promise<number>((resolve) => worker.once('exit', resolve));
    port1.close();
    expect(errors).toEqual([]);
    expect(code).toBe(1);
    expect(messages).toHaveLength(1);
    expect(messages[0]?.type).toBe('loadError');
  });
});
