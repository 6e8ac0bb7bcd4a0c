import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { once } from 'node:events';
import { ReedError } from '../../errors.js';
import { closeOnExecFrom3 } from './fd-hygiene.js';

/**
 * `spawn` for a sandbox: nothing of the host's beyond `options.stdio` reaches it (every host fd from 3 up is made
 * close-on-exec first, fd-hygiene.ts), and a spawn that fails is `sandbox_start_failed`, whatever way Node reports
 * it: some errors are thrown at once (E2BIG, EPERM), others come as an 'error' event with no child (EMFILE and
 * ENFILE even without stdio, which the caller would read as undefined: a TypeError, not a start error).
 */
export async function spawnSandbox(
  file: string,
  args: string[],
  options: SpawnOptions,
  pluginId: string,
): Promise<ChildProcess> {
  const failed = (error: unknown) =>
    new ReedError(
      'sandbox_start_failed',
      `the sandbox of plugin "${pluginId}" could not be started: ${
        error instanceof Error ? error.message : String(error)
      } (EMFILE or ENFILE: the host is out of file descriptors, see \`ulimit -n\`; EAGAIN: out of processes)`,
      { pluginId },
    );
  let child: ChildProcess;
  try {
    closeOnExecFrom3();
    child = spawn(file, args, options);
  } catch (error) {
    throw failed(error);
  }
  if (child.pid !== undefined) return child;
  // Node emits the error on the next tick; a child without a pid never runs.
  const [error] = await once(child, 'error').catch((e: unknown) => [e]);
  for (const stream of child.stdio ?? []) stream?.destroy();
  throw failed(error);
}
