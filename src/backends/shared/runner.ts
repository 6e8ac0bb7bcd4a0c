import type { RunnerLink } from './runner-link.js';

/** One incarnation of a sandbox-runner, wherever it runs (a child process, a container). The supervisor
 * (SupervisedSandbox) starts, watches and replaces these; it does not care which kind it holds. */
export interface Runner {
  /** The sandbox directory (socket, owner record). */
  readonly dir: string;
  readonly link: RunnerLink | undefined;
  /** Resolves when the runner has exited. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  readonly alive: boolean;
  /** The end of the runner's stderr, for error messages. */
  readonly stderrTail: string;
  /** A pid to report (the runner's process, or the container's init). */
  readonly pid: number | undefined;
  start(): Promise<void>;
  /** Whether it was killed for exceeding its memory limit. */
  oomKilled(): Promise<boolean>;
  kill(): void;
  /** Stops it by asking (SIGTERM) without waiting; `kill` follows if it does not exit. */
  terminate(): void;
  destroy(): Promise<void>;
}
