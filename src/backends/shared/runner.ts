import type { SandboxUsage } from './cgroup-usage.js';
import type { RunnerLink } from './runner-link.js';

/** One incarnation of a sandbox-runner, wherever it runs (a child process, a container). The supervisor
 * (SupervisedSandbox) starts, watches and replaces these; it does not care which kind it holds. */
export interface Runner {
  /**
   * The directory this runner owns on the host (owner record, and the Unix socket when that is its transport),
   * for reports and tests; undefined where it has none (not started, or a runner on another machine). The
   * supervisor never reads it: where the runner dials is its transport's business (src/transport/).
   */
  readonly dir: string | undefined;
  /** The host's end of the protocol with it, once it connected (whatever the transport). */
  readonly link: RunnerLink | undefined;
  /** Resolves when the runner has exited. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  readonly alive: boolean;
  /** The end of the runner's stderr, for error messages. */
  readonly stderrTail: string;
  /** A pid to report (the runner's process, or the container's init). */
  readonly pid: number | undefined;
  /** What this kind of runner enforces beyond what every runner does, and what it could not (for the 'runner ready' log). */
  readonly isolation?: { enforced: string[]; notEnforced: string[] };
  /** Whether it is a warm runner of a pool handed to its plugin (src/backends/pool/), not one started for it. */
  readonly pooled?: boolean;
  start(): Promise<void>;
  /** Whether it was killed for exceeding its memory limit. */
  oomKilled(): Promise<boolean>;
  /**
   * Once `oomKilled`: the tenant's memory quota (memory_mb, across its sandboxes) when that, not the runner's own
   * limit, was what the kernel enforced. Runners without a tenant limit above them have no such method.
   */
  tenantMemoryQuota?(): Promise<{ limitMb: number; tenant: string } | undefined>;
  /** Its memory and CPU from its cgroup's accounting, where it has a readable one. */
  usage?(): SandboxUsage | undefined;
  kill(): void;
  /** Stops it by asking (SIGTERM) without waiting; `kill` follows if it does not exit. */
  terminate(): void;
  destroy(): Promise<void>;
}
