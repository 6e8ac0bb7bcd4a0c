import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import pino from 'pino';
import { InProcessSandbox } from '../src/backends/in-process/in-process-sandbox.js';
import { DEFAULT_POLICY_PERMISSIONS } from '../src/host/host-config.js';
import { PluginHostApi } from '../src/host/plugin-host-api.js';
import { MemoryContentService, MemoryEventBus, MemoryStorage } from '../src/host/services.js';
import { DEFAULT_LIMITS } from '../src/manifest/limits.js';
import { readCheckedLibrary } from '../src/runtime/native/check-library.js';
import * as T from '../src/runtime/native/koffi-types.js';
import { NativePlugin } from '../src/runtime/native/native-plugin.js';
import { fmt, perCall, printTable } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

export async function runNativeBench(): Promise<boolean> {
  const file = join(REPO, 'examples/plugins/native-c/plugin.so');
  const input = Buffer.alloc(64, 120);
  const services = {
    storage: new MemoryStorage(),
    content: new MemoryContentService(),
    events: new MemoryEventBus(),
  };
  const hostApi = new PluginHostApi(
    'bench',
    { ...DEFAULT_POLICY_PERMISSIONS },
    DEFAULT_LIMITS,
    { title: 'bench' },
    services,
    pino({ level: 'silent' }),
  );
  const bytes = readCheckedLibrary(file, 'bench', 1 << 30);
  const sandbox = new InProcessSandbox(
    'bench',
    async () =>
      new NativePlugin({
        pluginId: 'bench',
        bytes,
        privateDir: join(REPO, '.reed', 'bench-native'),
        host: hostApi,
        limits: DEFAULT_LIMITS,
        hostApiVersion: '1.0.0',
      }),
    DEFAULT_LIMITS.callTimeoutMs,
  );
  await sandbox.start();
  const ours = perCall(() => {
    if (sandbox.callSync('echo', input).output.length !== 64) throw new Error('echo failed');
  });
  await sandbox.close();

  // Baseline: the same function called directly through koffi, with the same output handling a caller needs
  // (read the bytes, give the buffer back), and nothing else.
  const lib = koffi.load(file);
  const create = lib.func('void *_reed_plugin_create(void)');
  const plugin = koffi.decode(create(), T.Plugin) as Record<string, unknown>;
  const call = koffi.decode(plugin.call, T.CallFn) as (...a: unknown[]) => number;
  const free = koffi.decode(plugin.free_output, T.FreeOutputFn) as (...a: unknown[]) => void;
  const self = plugin.self;
  const raw = perCall(() => {
    const out: { data?: unknown; len?: number } = {};
    call(self, 'echo', input, input.length, out);
    const copy = new Uint8Array(koffi.view(out.data, Number(out.len))).slice();
    free(self, out.data, out.len);
    if (copy.length !== 64) throw new Error('echo failed');
  });
  const ratio = ours / raw;
  printTable('native: mode none', [
    {
      figure: 'echo 64 B, whole host path',
      value: `${fmt(ours, 3)} us`,
      baseline: `${fmt(raw, 3)} us direct koffi`,
      ratio: `${fmt(ratio, 2)}x`,
      target: '<= 2x',
      met: ratio <= 2,
    },
  ]);
  return ratio <= 2;
}
