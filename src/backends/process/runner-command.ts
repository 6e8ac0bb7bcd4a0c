import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { PACKAGE_ROOT, RUNNER_MAIN } from '../shared/runner-program.js';

/**
 * Node's permission flag: `--permission` from 22.13 and 23.5 (Node 24 refuses the experimental name), before
 * that `--experimental-permission`.
 */
export function permissionFlag(version = process.versions.node): string {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 5) || (major === 22 && minor >= 13)
    ? '--permission'
    : '--experimental-permission';
}

/**
 * V8 flags for every runner, process and container mode (container-spec.ts). One V8 worker thread, not four: a runner
 * runs one plugin, mostly idle, and a host runs many of them; three threads fewer per runner (their stacks and malloc
 * arenas): 0.1-0.3 MiB PSS less per idle runner, measured (docs/ARCHITECTURE.md, "The runner's memory"). GC and WASM
 * tier-up still run beside the main thread. And the young generation capped at 1 MiB semi-spaces (V8's default grows
 * them to 16 MiB under a stream of calls and never gives the room back): after 20,000 calls an example.hello runner
 * kept 12.5-12.9 MiB anonymous, with the cap 10.4-10.8, for the same runner CPU per call (2 runs each). The plugin's
 * data is WASM memory or large objects, not young JS objects.
 */
export const RUNNER_V8_FLAGS: readonly string[] = ['--v8-pool-size=1', '--max-semi-space-size=1'];

/** What a warm runner of a pool loads before its main module (sandbox-runner/warm-preload.ts). */
export const WARM_PRELOAD = join(PACKAGE_ROOT, 'dist', 'runner', 'warm-preload.js');

/**
 * The Node flags the runner runs with by default: a heap cap, and Node's permission model as an extra layer (which
 * also names the data directory's mount when the plugin has one: readable, and writable for "readwrite"). A warm
 * runner of a pool (`warm`) preloads the WASM runtime before it connects (`--import`): the pool's fill pays for it,
 * not the hand-out.
 */
export function defaultRunnerCommand(
  workDir: string,
  limits: ResolvedLimits,
  dataDir?: { path: string; readOnly: boolean },
  warm = false,
): string[] {
  return [
    process.execPath,
    `--max-old-space-size=${Math.max(128, limits.memoryMb)}`,
    ...RUNNER_V8_FLAGS,
    permissionFlag(),
    // One flag per path; the package.json tells the loader these are ES modules.
    ...[
      join(PACKAGE_ROOT, 'package.json'),
      join(PACKAGE_ROOT, 'dist'),
      join(PACKAGE_ROOT, 'node_modules'),
      workDir,
      ...(dataDir === undefined ? [] : [dataDir.path]),
    ].map((p) => `--allow-fs-read=${p}`),
    `--allow-fs-write=${workDir}`,
    ...(dataDir === undefined || dataDir.readOnly ? [] : [`--allow-fs-write=${dataDir.path}`]),
    '--allow-worker',
    // koffi (native plugins, and prctl) is an addon. Native plugin code is beyond the permission model anyway.
    '--allow-addons',
    '--no-warnings',
    ...(warm ? [`--import=${pathToFileURL(WARM_PRELOAD).href}`] : []),
    RUNNER_MAIN,
  ];
}
