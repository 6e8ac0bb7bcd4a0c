import type { ParsedCandidate } from '../discovery/candidate.js';
import type { ReedError } from '../errors.js';
import type { PluginType, SandboxMode } from '../manifest/types.js';
import type { Generation } from './generation.js';

/**
 * `ready` takes calls; `starting`: loading (or waking from idle); `restarting`: its runner was lost and another is
 * starting (calls wait); `idle`: scaled to zero after its `idle_timeout` without a call (no runner, container or
 * instance; its storage and data directory stay), woken by the next call; `draining`: being removed, its calls in
 * flight finishing (new calls are refused); `failed`: it did not load, or its breaker is open (`retryAt` says when
 * it half-opens); `stopped`.
 */
export type PluginState = 'ready' | 'starting' | 'restarting' | 'idle' | 'draining' | 'failed' | 'stopped';

/** One change of a plugin's version while the host runs, as its status keeps it (the last few). */
export interface LifecycleRecord {
  /** ISO 8601. */
  at: string;
  /**
   * `upgraded`: `version` serves in place of `fromVersion`; `upgrade_failed`: `version` did not start, `fromVersion`
   * kept serving (or stayed failed); `rolled_back`: `fromVersion` tripped its breaker on probation and `version` was
   * restored; `rollback_failed`: restoring `version` failed, `fromVersion` stays; `probation_passed`.
   */
  action: 'upgraded' | 'upgrade_failed' | 'rolled_back' | 'rollback_failed' | 'probation_passed';
  version: string;
  fromVersion?: string;
  error?: { code: string; message: string };
}

export interface PluginStatus {
  id: string;
  version: string;
  type: PluginType | undefined;
  mode: SandboxMode;
  state: PluginState;
  /** Why it failed to load, or why its breaker opened (`plugin_failed`). */
  error?: { code: string; message: string };
  /** Crashes within the breaker's window. */
  crashes: number;
  /** The last crash or failed restart of its sandbox. */
  lastError?: { code: string; message: string };
  /** When an open breaker half-opens: one trial start (ISO 8601). */
  retryAt?: string;
  /** `[sandbox] replicas` above 1: how many runners the plugin has, and how many are ready now. */
  replicas?: { total: number; ready: number };
  /** A new version being started to replace this one. */
  upgrading?: string;
  /** Older versions still finishing their calls in flight after an upgrade. */
  draining?: { version: string; inFlight: number }[];
  /** While a new version is on probation: the version restored if its breaker opens, until when. */
  probation?: { previousVersion: string; until: string };
  /** The last changes of version, oldest first (at most 10). */
  history: LifecycleRecord[];
}

/** What the plugin set keeps per plugin id. */
export interface Entry {
  /** The version serving, or the one that failed to load. */
  candidate: ParsedCandidate;
  mode: SandboxMode;
  /** The generation that takes calls. */
  current?: Generation;
  state: 'starting' | 'ready' | 'draining' | 'failed' | 'stopped';
  error?: ReedError;
  /** A load being tried again (PluginSet.retryLoad). */
  retry?: Promise<void> | undefined;
  /** Older generations finishing their calls in flight. */
  draining: Set<Generation>;
  upgrading?: string;
  probation?: { previous: Generation; until: number; timer: NodeJS.Timeout };
  history: LifecycleRecord[];
}

const HISTORY = 10;

export function record(entry: Entry, change: Omit<LifecycleRecord, 'at'>): void {
  entry.history.push({ at: new Date().toISOString(), ...change });
  if (entry.history.length > HISTORY) entry.history.splice(0, entry.history.length - HISTORY);
}

/** The entry's status as it is now: a loaded plugin's state is its sandbox's (a restart, an open breaker). */
export function statusOf(e: Entry): PluginStatus {
  const live = e.state === 'ready' ? e.current?.sandbox.status() : undefined;
  const liveFailure =
    live?.state === 'failed' && live.lastError !== undefined
      ? {
          code: 'plugin_failed',
          message: `its breaker is open after crashes; last: ${live.lastError.code}: ${live.lastError.message}`,
        }
      : undefined;
  const error = e.error === undefined ? liveFailure : { code: e.error.code, message: e.error.message };
  const draining = [...e.draining].map((g) => ({ version: g.version, inFlight: g.inFlight }));
  return {
    id: e.candidate.id,
    version: e.candidate.manifest.metadata.version,
    type: e.candidate.pluginType,
    mode: e.mode,
    state: live === undefined ? e.state : live.state,
    ...(error === undefined ? {} : { error }),
    crashes: live?.crashes ?? 0,
    ...(live?.lastError === undefined ? {} : { lastError: live.lastError }),
    ...(live?.retryAt === undefined ? {} : { retryAt: live.retryAt }),
    ...(live?.replicas === undefined ? {} : { replicas: live.replicas }),
    ...(e.upgrading === undefined ? {} : { upgrading: e.upgrading }),
    ...(draining.length === 0 ? {} : { draining }),
    ...(e.probation === undefined
      ? {}
      : {
          probation: {
            previousVersion: e.probation.previous.version,
            until: new Date(e.probation.until).toISOString(),
          },
        }),
    history: [...e.history],
  };
}
