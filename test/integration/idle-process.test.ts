// Scale to zero in process mode (issue 16, part 2): the runner is stopped after idle_timeout (deactivate first) and
// started again on the next call (test/helpers/idle.ts). Runs from dist/ (npm run build).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { idleSuite, supervisorOf, until } from '../helpers/idle.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('scale to zero, process mode', () => {
  idleSuite(
    'process',
    {
      // No runner process, and no runner directory (socket, work directory) of this host's under runtime_dir/sandboxes.
      async nothingRuns(host, sandbox) {
        const runner = supervisorOf(sandbox)?.runner;
        if (runner?.pid !== undefined) {
          const pid = runner.pid;
          await until(() => !alive(pid), `runner ${pid} to be gone`);
        }
        expect(runner === undefined || !runner.alive).toBe(true);
        const dir = join(host.config.runtimeDir, 'sandboxes');
        const left = (() => {
          try {
            return readdirSync(dir).filter((name) => name.startsWith(`${host.session.id.slice(0, 8)}-`));
          } catch {
            return [];
          }
        })();
        expect(left).toEqual([]);
      },
    },
    60_000,
  );
});
