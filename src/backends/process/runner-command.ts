import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResolvedLimits } from '../../manifest/limits.js';
import { PACKAGE_ROOT, RUNNER_MAIN, RUNNER_V8_FLAGS, WARM_PRELOAD } from '../shared/runner-program.js';

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
