import semver from 'semver';
import type { Sandbox } from '../backends/sandbox.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { publish } from '../events/events.js';
import type { PluginType, SandboxMode } from '../manifest/types.js';

/**
 * `ready` takes calls; `starting` is loading; `restarting`: its runner was lost and another is starting (calls
 * wait); `failed`: it did not load, or its breaker is open (`retryAt` says when it half-opens); `stopped`.
 */
export type PluginState = 'ready' | 'starting' | 'restarting' | 'failed' | 'stopped';

export interface PluginStatus {
  id: string;
  version: string;
  type: PluginType | undefined;
  mode: SandboxMode;
  state: PluginState;
  /** Why it failed to load, or why its breaker opened (`plugin_failed`, the cause in `details`). */
  error?: { code: string; message: string };
  /** Crashes within the breaker's window. */
  crashes: number;
  /** The last crash or failed restart of its sandbox. */
  lastError?: { code: string; message: string };
  /** When an open breaker half-opens: one trial start (ISO 8601). */
  retryAt?: string;
}

export interface Entry {
  candidate: ParsedCandidate;
  mode: SandboxMode;
  sandbox?: Sandbox;
  state: PluginState;
  error?: ReedError;
  /** A load being tried again (see #retryLoad). */
  retry?: Promise<void> | undefined;
}

/** How the set starts one plugin: plan it, start its sandbox (PluginHost#startSandbox). */
export type StartSandbox = (candidate: ParsedCandidate, mode: SandboxMode) => Promise<Sandbox>;

/**
 * The host's running plugins, in load order (dependencies first): loading with the failure of a dependency
 * passed on, retries after a Docker outage, and changes while the host runs (add, replace, remove one plugin,
 * its dependants stopped first and started again after). Changes are made one at a time.
 */
export class PluginSet {
  /** Insertion order is load order: a dependency is always before its dependants. */
  readonly entries = new Map<string, Entry>();
  #change: Promise<unknown> = Promise.resolve();
  closed = false;

  constructor(
    private readonly startSandbox: StartSandbox,
    private readonly modeOf: (candidate: ParsedCandidate) => SandboxMode,
    /** The host's session id: the events about its plugins name it. */
    private readonly session: string,
  ) {}

  /** What every event about this entry carries. */
  #at(entry: Entry): { session: string; pluginId: string; mode: SandboxMode } {
    return { session: this.session, pluginId: entry.candidate.id, mode: entry.mode };
  }

  /** Loads a candidate at the end of the order (or in its place, for a replace), unless a dependency failed. */
  async load(candidate: ParsedCandidate): Promise<Entry> {
    const entry: Entry = { candidate, mode: this.modeOf(candidate), state: 'failed' };
    this.entries.set(candidate.id, entry);
    const unmet = this.#unmetDependency(candidate);
    if (unmet !== undefined) {
      entry.error = new ReedError(unmet.code, unmet.message, { pluginId: candidate.id });
      publish('reed:plugin:failed', { ...this.#at(entry), error: entry.error });
      return entry;
    }
    await this.#loadEntry(entry);
    return entry;
  }

  #unmetDependency(
    candidate: ParsedCandidate,
  ): { code: 'dependency_invalid' | 'dependency_version_mismatch'; message: string } | undefined {
    for (const d of candidate.manifest.requirements.dependencies) {
      const dep = this.entries.get(d.id);
      if (d.optional || dep === undefined) continue;
      const at = `plugin "${candidate.id}" is not loaded: its dependency "${d.id}"`;
      if (dep.state === 'failed') return { code: 'dependency_invalid', message: `${at} failed to load` };
      const version = dep.candidate.manifest.metadata.version;
      if (!semver.satisfies(version, d.version))
        return { code: 'dependency_version_mismatch', message: `${at} is ${version}, outside ${d.version}` };
    }
    return undefined;
  }

  /** Creates and starts the entry's sandbox; on failure the entry is `failed` with a typed error. */
  async #loadEntry(entry: Entry): Promise<void> {
    const { candidate, mode } = entry;
    try {
      const sandbox = await this.startSandbox(candidate, mode);
      if (this.closed) {
        // The host closed while this (re)load ran: close() has not seen this sandbox, so stop it here.
        await sandbox.close();
        throw new ReedError('host_closed', 'the plugin host is closed', { pluginId: candidate.id });
      }
      entry.sandbox = sandbox;
      entry.state = 'ready';
      delete entry.error;
      publish('reed:plugin:loaded', { ...this.#at(entry), version: candidate.manifest.metadata.version });
    } catch (error) {
      entry.error =
        error instanceof ReedError
          ? error
          : new ReedError(
              'init_failed',
              `plugin "${candidate.id}" failed to load: ${(error as Error).message}`,
              {
                pluginId: candidate.id,
                cause: error,
              },
            );
      publish('reed:plugin:failed', { ...this.#at(entry), error: entry.error });
    }
  }

  /**
   * Whether a failed plugin may load now: it failed only because the Docker engine did not answer, or because
   * a required dependency failed that way (and nothing else).
   */
  retryable(entry: Entry): boolean {
    if (entry.state !== 'failed' || this.closed) return false;
    if (entry.error?.code === 'docker_unavailable') return true;
    if (entry.error?.code !== 'dependency_invalid') return false;
    return this.#requiredDependencies(entry).every((dep) => dep.state === 'ready' || this.retryable(dep));
  }

  #requiredDependencies(entry: Entry): Entry[] {
    return entry.candidate.manifest.requirements.dependencies
      .filter((d) => !d.optional)
      .map((d) => this.entries.get(d.id))
      .filter((dep): dep is Entry => dep !== undefined);
  }

  /**
   * Loads a retryable plugin again (its failed dependencies first, in order; one attempt at a time per plugin):
   * the host recovers when the engine comes back, on the next call.
   */
  async retryLoad(entry: Entry): Promise<void> {
    for (const dep of this.#requiredDependencies(entry)) {
      if (dep.state === 'failed') await this.retryLoad(dep);
      if (dep.state !== 'ready') return;
    }
    entry.retry ??= this.#loadEntry(entry).finally(() => {
      entry.retry = undefined;
    });
    await entry.retry;
  }

  /** The plugins that need `id` (required dependencies, transitively), in load order. */
  dependantsOf(id: string): Entry[] {
    const needed = new Set([id]);
    const found: Entry[] = [];
    for (const entry of this.entries.values()) {
      if (entry.candidate.manifest.requirements.dependencies.some((d) => !d.optional && needed.has(d.id))) {
        needed.add(entry.candidate.id);
        found.push(entry);
      }
    }
    return found;
  }

  /** Runs set changes one at a time, in the order asked. */
  serially<T>(change: () => Promise<T>): Promise<T> {
    const next = this.#change.then(change, change);
    this.#change = next.catch(() => {});
    return next;
  }

  /** Deactivates and stops one entry's sandbox (one without a sandbox stays as it is). */
  async stop(entry: Entry): Promise<void> {
    const sandbox = entry.sandbox;
    delete entry.sandbox;
    if (sandbox === undefined) return;
    let failure: { code: string | undefined; message: string } | undefined;
    try {
      await sandbox.close();
    } catch (error) {
      // Code and message only: whatever the plugin put in the error must not stop the shutdown.
      const { code, message } = error as Partial<ReedError>;
      failure = { code, message: String(message) };
    }
    entry.state = 'stopped';
    publish('reed:plugin:stopped', {
      ...this.#at(entry),
      ...(failure === undefined ? {} : { error: failure }),
    });
  }

  /** Every plugin stopped, in reverse load order. */
  async stopAll(): Promise<void> {
    for (const entry of [...this.entries.values()].reverse())
      if (entry.sandbox !== undefined) await this.stop(entry);
  }

  status(): PluginStatus[] {
    return [...this.entries.values()].map((e) => statusOf(e));
  }
}

/** These plugins and what they depend on, transitively (among `order`). */
export function withDependencies(order: ParsedCandidate[], ids: string[]): Set<string> {
  const byId = new Map(order.map((c) => [c.id, c]));
  const wanted = new Set<string>();
  const visit = (id: string) => {
    if (wanted.has(id)) return;
    wanted.add(id);
    for (const d of byId.get(id)?.manifest.requirements.dependencies ?? []) if (byId.has(d.id)) visit(d.id);
  };
  for (const id of ids) visit(id);
  return wanted;
}

/** The entry's status as it is now: a loaded plugin's state is its sandbox's (a restart, an open breaker). */
function statusOf(e: Entry): PluginStatus {
  const live = e.state === 'ready' ? e.sandbox?.status() : undefined;
  const liveFailure =
    live?.state === 'failed' && live.lastError !== undefined
      ? {
          code: 'plugin_failed',
          message: `the breaker is open after crashes; last: ${live.lastError.code}: ${live.lastError.message}`,
        }
      : undefined;
  const error = e.error === undefined ? liveFailure : { code: e.error.code, message: e.error.message };
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
  };
}
