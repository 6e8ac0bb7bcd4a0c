/** Where the runner program is, what it needs besides the plugin, and how its start is awaited: shared by every backend that starts a runner. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReedError } from '../../errors.js';

/** The package's root directory, whether this file runs from src/ (tests) or dist/src/ (built). */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
export const PACKAGE_ROOT = findPackageRoot();
/** The runner program: sandbox-runner/main.ts as bundled by scripts/bundle.mjs (one CommonJS file, required from this one). */
export const RUNNER_MAIN = join(PACKAGE_ROOT, 'dist', 'runner', 'main.js');
/**
 * V8 flags for every runner, process and container mode (runner-command.ts, container-spec.ts). One V8 worker thread, not four: a runner
 * runs one plugin, mostly idle, and a host runs many of them; three threads fewer per runner (their stacks and malloc
 * arenas): 0.1-0.3 MiB PSS less per idle runner, measured (docs/ARCHITECTURE.md, "The runner's memory"). GC and WASM
 * tier-up still run beside the main thread. And the young generation capped at 1 MiB semi-spaces (V8's default grows
 * them to 16 MiB under a stream of calls and never gives the room back): after 20,000 calls an example.hello runner
 * kept 12.5-12.9 MiB anonymous, with the cap 10.4-10.8, for the same runner CPU per call (2 runs each). The plugin's
 * data is WASM memory or large objects, not young JS objects.
 */
export const RUNNER_V8_FLAGS: readonly string[] = ['--v8-pool-size=1', '--max-semi-space-size=1'];

/** What a warm runner of a pool loads before its main module (sandbox-runner/warm-preload.ts, bundled). */
export const WARM_PRELOAD = join(PACKAGE_ROOT, 'dist', 'runner', 'warm-preload.js');
/**
 * Where a runner sees the plugin's data directory (permissions.filesystem), in process and container modes alike:
 * that one directory is bind-mounted there (read-only for "read") and nothing else of data_dir is visible.
 */
export const RUNNER_DATA_DIR = '/run/reed-data';
/** Memory a runner needs besides the plugin's own: Node, V8's heap, buffers. Added to limits.memory_mb for the cgroup. */
export const RUNNER_ALLOWANCE_MB = 192;
/** Ready, or a start error that says why: the deadline passed, or the runner exited (with its last words). */
export async function raceStart(
  ready: Promise<void>,
  exited: Promise<{ code: number | null; signal: string | null }>,
  timeoutMs: number,
  pluginId: string,
  tail: () => string,
): Promise<void> {
  const lastWords = () => {
    const t = tail().trim();
    return t === '' ? '' : `; its output ended with: ${t.slice(-1000)}`;
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ReedError(
            'sandbox_start_failed',
            `the runner of plugin "${pluginId}" did not become ready within ${timeoutMs} ms${lastWords()}`,
            { pluginId },
          ),
        ),
      timeoutMs,
    );
  });
  const died = exited.then(({ code, signal }) => {
    throw new ReedError(
      'sandbox_start_failed',
      `the runner of plugin "${pluginId}" exited during start (${signal ?? `code ${code}`})${lastWords()}`,
      { pluginId },
    );
  });
  try {
    await Promise.race([ready, deadline, died]);
  } finally {
    clearTimeout(timer);
    died.catch(() => {});
  }
}
