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
/** The runner program: sandbox-runner/main.ts as bundled by scripts/bundle.mjs (one file and a few chunks). */
export const RUNNER_MAIN = join(PACKAGE_ROOT, 'dist', 'runner', 'main.js');
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
