// Over 300 lines: the plugin set is one state machine per plugin id (load, retry, upgrade with drain, probation and
// rollback, removal), and its transitions read best side by side.
import semver from 'semver';
import type { LoadPlan } from '../backends/backend.js';
import type { Sandbox } from '../backends/sandbox.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { publish, subscribeEvent } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';
import { Generation } from './generation.js';
import { type Entry, type PluginStatus, record, statusOf } from './plugin-status.js';

export type { Entry, LifecycleRecord, PluginState, PluginStatus } from './plugin-status.js';

/** How the set starts one plugin (PluginHost): read and plan it (may throw), then start a plan's sandbox. */
export interface Starter {
  plan(candidate: ParsedCandidate, mode: SandboxMode): LoadPlan;
  start(plan: LoadPlan): Promise<Sandbox>;
}

/** reed.toml's `[lifecycle]`. */
export interface LifecycleSettings {
  probationMs: number;
  drainTimeoutMs: number;
}

/** Told which generation serves and which are let go (the store of installed plugins keeps its pointer by this). */
export interface LifecycleListener {
  /** `generation` serves `id` from now on (after an upgrade, or a rollback), before the one it replaces drains. */
  serving?(id: string, generation: Generation): void;
  /** Nothing will start this generation again (past probation, rolled back from, or removed). */
  retired?(id: string, generation: Generation): void;
}

/**
 * The host's running plugins, in load order (dependencies first): loading with the failure of a dependency
 * passed on, retries after a Docker outage, and changes while the host runs: add, upgrade (the new version
 * started beside the old, calls switched to it once it is ready, the old one drained and stopped; on probation,
 * rolled back if its breaker opens), remove (drained). Changes are made one at a time.
 */
export class PluginSet {
  /**
   * Insertion order is load order: a dependency is always before its dependants. Keyed by each id's internalized
   * copy (internalized(), below): every call looks its plugin up here.
   */
  readonly entries = new Map<string, Entry>();
  #change: Promise<unknown> = Promise.resolve();
  closed = false;

  constructor(
    private readonly starter: Starter,
    private readonly modeOf: (candidate: ParsedCandidate) => SandboxMode,
    /** The host's session (and tenant): the events about its plugins name them. */
    private readonly session: { session: string; tenant?: string },
    private readonly lifecycle: LifecycleSettings,
  ) {}

  /** Told which generation serves and which are let go (PluginHost sets it). */
  listener: LifecycleListener = {};

  /** What every event about this entry carries. */
  #at(entry: Entry): { session: string; tenant?: string; pluginId: string; mode: SandboxMode } {
    return { ...this.session, pluginId: entry.candidate.id, mode: entry.mode };
  }

  /** Loads a candidate at the end of the order (or in its place), unless a dependency failed. */
  async load(candidate: ParsedCandidate): Promise<Entry> {
    const entry: Entry = {
      candidate,
      mode: this.modeOf(candidate),
      state: 'starting',
      draining: new Set(),
      history: [],
    };
    this.entries.set(internalized(candidate.id), entry);
    const unmet = this.#unmetDependency(candidate);
    if (unmet !== undefined) {
      entry.state = 'failed';
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
      if (d.optional || dep === undefined || dep.candidate.id === candidate.id) continue;
      const at = `plugin "${candidate.id}" is not loaded: its dependency "${d.id}"`;
      if (dep.state === 'failed') return { code: 'dependency_invalid', message: `${at} failed to load` };
      const version = dep.candidate.manifest.metadata.version;
      if (!semver.satisfies(version, d.version))
        return { code: 'dependency_version_mismatch', message: `${at} is ${version}, outside ${d.version}` };
    }
    return undefined;
  }

  /** Plans, creates and starts a generation of `candidate`; throws a typed error when it does not start. */
  async #start(candidate: ParsedCandidate, mode: SandboxMode): Promise<Generation> {
    try {
      const plan = this.starter.plan(candidate, mode);
      return await this.#startPlan(candidate, plan);
    } catch (error) {
      throw asReedError(error, candidate.id);
    }
  }

  async #startPlan(candidate: ParsedCandidate, plan: LoadPlan): Promise<Generation> {
    const started = performance.now();
    const sandbox = await this.starter.start(plan);
    const startMs = performance.now() - started;
    if (this.closed) {
      // The host closed while this start ran: close() has not seen this sandbox, so stop it here.
      await sandbox.close();
      throw new ReedError('host_closed', 'the plugin host is closed', { pluginId: candidate.id });
    }
    const generation = new Generation(candidate, plan, sandbox);
    coldStarts.set(generation, startMs);
    return generation;
  }

  /** Starts the entry's candidate; on failure the entry is `failed` with a typed error. */
  async #loadEntry(entry: Entry): Promise<void> {
    try {
      entry.current = await this.#start(entry.candidate, entry.mode);
      entry.state = 'ready';
      delete entry.error;
      publish('reed:plugin:loaded', {
        ...this.#at(entry),
        version: entry.current.version,
        ...startMsOf(entry.current),
        ...(entry.candidate.pluginType === undefined ? {} : { runtime: entry.candidate.pluginType }),
      });
    } catch (error) {
      entry.state = 'failed';
      entry.error = error as ReedError;
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

  /**
   * Refuses an upgrade that could not serve: a required dependency failed or is outside the new version's range,
   * or a loaded plugin that depends on this one directly needs a version range the new version misses.
   */
  #checkUpgrade(entry: Entry, candidate: ParsedCandidate): void {
    const unmet = this.#unmetDependency(candidate);
    if (unmet !== undefined)
      throw new ReedError(unmet.code, unmet.message.replace('is not loaded', 'cannot be upgraded'), {
        pluginId: candidate.id,
      });
    const version = candidate.manifest.metadata.version;
    for (const other of this.entries.values()) {
      if (other === entry || other.state === 'failed') continue;
      const need = other.candidate.manifest.requirements.dependencies.find(
        (d) => d.id === candidate.id && !d.optional,
      );
      if (need !== undefined && !semver.satisfies(version, need.version))
        throw new ReedError(
          'dependant_version_mismatch',
          `plugin "${candidate.id}" cannot be upgraded to ${version}: plugin "${other.candidate.id}" depends on it with the range ${need.version} (its plugin.toml, requirements.dependencies); upgrade or remove that plugin first`,
          {
            pluginId: candidate.id,
            field: 'requirements.dependencies',
            details: { dependant: other.candidate.id, range: need.version, version },
          },
        );
    }
  }

  /**
   * Upgrades a loaded plugin to `candidate` (same id) without dropping a call: the new version starts beside the
   * old one, new calls go to it once it is ready, the old one finishes its calls in flight (at most
   * `drainTimeoutMs`) and is stopped. A new version that does not start leaves the old one serving, and this
   * rejects with the failure's code. The replaced version is kept on probation for `probationMs`: if the new one's
   * breaker opens meanwhile, it is restored (#rollback). Dependants keep running.
   */
  async upgrade(entry: Entry, candidate: ParsedCandidate): Promise<Entry> {
    this.#checkUpgrade(entry, candidate);
    const id = candidate.id;
    const version = candidate.manifest.metadata.version;
    const fromVersion = entry.candidate.manifest.metadata.version;
    const mode = this.modeOf(candidate);
    const previous = entry.current;
    entry.upgrading = version;
    let next: Generation;
    try {
      next = await this.#start(candidate, mode);
    } catch (error) {
      const failure = error as ReedError;
      record(entry, { action: 'upgrade_failed', version, fromVersion, error: brief(failure) });
      publish('reed:plugin:upgrade-failed', { ...this.#at(entry), version, fromVersion, error: failure });
      const kept =
        previous === undefined ? `${fromVersion} stays ${entry.state}` : `${fromVersion} keeps serving`;
      throw new ReedError(
        failure.code,
        `plugin "${id}" was not upgraded to ${version} (${kept}): ${failure.message}`,
        {
          pluginId: id,
          cause: failure,
          ...(failure.file === undefined ? {} : { file: failure.file }),
          ...(failure.field === undefined ? {} : { field: failure.field }),
          details: { ...failure.details, version, servingVersion: fromVersion },
        },
      );
    } finally {
      delete entry.upgrading;
    }
    // A probation under way ends: what it would restore is older than what now serves.
    this.#endProbation(entry);
    entry.current = next;
    entry.candidate = candidate;
    entry.mode = mode;
    entry.state = 'ready';
    delete entry.error;
    record(entry, { action: 'upgraded', version, fromVersion });
    publish('reed:plugin:upgraded', {
      ...this.#at(entry),
      version,
      fromVersion,
      ...startMsOf(next),
      ...(candidate.pluginType === undefined ? {} : { runtime: candidate.pluginType }),
    });
    this.listener.serving?.(id, next);
    if (previous !== undefined) {
      if (this.lifecycle.probationMs > 0) this.#startProbation(entry, previous);
      await this.#retire(entry, previous, previous.version);
      if (entry.probation?.previous !== previous) this.listener.retired?.(id, previous);
    }
    // Dependants that could not load for want of this plugin may load now.
    for (const dependant of this.dependantsOf(id))
      if (dependant.state === 'failed' && dependant.error?.code.startsWith('dependency_'))
        await this.#loadEntry(dependant);
    return entry;
  }

  #startProbation(entry: Entry, previous: Generation): void {
    const until = Date.now() + this.lifecycle.probationMs;
    const timer = setTimeout(() => {
      void this.serially(async () => {
        if (entry.probation?.previous !== previous) return;
        record(entry, { action: 'probation_passed', version: entry.candidate.manifest.metadata.version });
        this.#endProbation(entry);
      });
    }, this.lifecycle.probationMs);
    timer.unref();
    entry.probation = { previous, until, timer };
  }

  /** Ends a probation (passed, superseded, removed or closed): the previous generation is retired for good. */
  #endProbation(entry: Entry): void {
    const probation = entry.probation;
    if (probation === undefined) return;
    clearTimeout(probation.timer);
    delete entry.probation;
    this.listener.retired?.(entry.candidate.id, probation.previous);
  }

  /**
   * Restores the version on probation's previous generation: the failed one tripped its breaker. Started from its
   * plan (the bytes checked when it first loaded), it takes calls at once; the failed generation is stopped.
   */
  async #rollback(entry: Entry, failed: Generation, error: ReedError): Promise<void> {
    const probation = entry.probation;
    if (probation === undefined || entry.current !== failed || this.closed) return;
    clearTimeout(probation.timer);
    delete entry.probation;
    const { previous } = probation;
    const id = entry.candidate.id;
    let restored: Generation;
    try {
      restored = await this.#startPlan(previous.candidate, previous.plan);
    } catch (startError) {
      const failure = asReedError(startError, id);
      record(entry, {
        action: 'rollback_failed',
        version: previous.version,
        fromVersion: failed.version,
        error: brief(failure),
      });
      this.listener.retired?.(id, previous);
      return;
    }
    entry.current = restored;
    entry.candidate = previous.candidate;
    entry.mode = previous.plan.mode;
    record(entry, {
      action: 'rolled_back',
      version: previous.version,
      fromVersion: failed.version,
      error: brief(error),
    });
    publish('reed:plugin:rolled-back', {
      ...this.#at(entry),
      version: previous.version,
      fromVersion: failed.version,
      error,
    });
    this.listener.serving?.(id, restored);
    await this.#retire(entry, failed, failed.version);
    this.listener.retired?.(id, failed);
  }

  /**
   * Rolls back plugins on probation whose breaker opens (the events are the one source: the supervisor publishes
   * `reed:breaker:opened`). Returns the unsubscribe.
   */
  watchBreakers(): () => void {
    return subscribeEvent('reed:breaker:opened', (event) => {
      if (event.session !== this.session.session) return;
      const entry = this.entries.get(event.pluginId);
      const current = entry?.current;
      if (entry?.probation === undefined || current === undefined) return;
      // The generation that serves, not an old one draining: its own state says whether it is the one that failed.
      if (Date.now() > entry.probation.until || current.sandbox.status().state !== 'failed') return;
      void this.serially(() => this.#rollback(entry, current, event.error)).catch(() => {});
    });
  }

  /** Lets a generation that no longer takes calls finish those in flight, then stops it. */
  async #retire(entry: Entry, generation: Generation, version: string): Promise<void> {
    entry.draining.add(generation);
    try {
      const drained = await generation.drained(this.lifecycle.drainTimeoutMs);
      await this.#close(entry, generation, version, drained);
    } finally {
      entry.draining.delete(generation);
    }
  }

  /** Deactivates and stops one generation's sandbox; a failure there is an event, never a throw. */
  async #close(entry: Entry, generation: Generation, version: string, drained = true): Promise<void> {
    let failure: { code: string | undefined; message: string } | undefined;
    try {
      await generation.sandbox.close();
    } catch (error) {
      // Code and message only: whatever the plugin put in the error must not stop the shutdown.
      const { code, message } = error as Partial<ReedError>;
      failure = { code, message: String(message) };
    }
    publish('reed:plugin:stopped', {
      ...this.#at(entry),
      version,
      ...(drained ? {} : { drainTimedOut: true }),
      ...(failure === undefined ? {} : { error: failure }),
    });
  }

  /** Runs set changes one at a time, in the order asked. */
  serially<T>(change: () => Promise<T>): Promise<T> {
    const next = this.#change.then(change, change);
    this.#change = next.catch(() => {});
    return next;
  }

  /** Stops one entry at once (no drain): its generation, and any still draining. */
  async stop(entry: Entry): Promise<void> {
    this.#endProbation(entry);
    const current = entry.current;
    delete entry.current;
    if (current !== undefined) {
      await this.#close(entry, current, current.version);
      entry.state = 'stopped';
    }
    for (const old of entry.draining) await old.sandbox.close().catch(() => {});
  }

  /**
   * Removes one entry: new calls are refused at once (`draining`), those in flight finish (at most
   * `drainTimeoutMs`), then its sandbox is stopped and the entry forgotten.
   */
  async remove(entry: Entry): Promise<void> {
    this.#endProbation(entry);
    const current = entry.current;
    delete entry.current;
    entry.state = 'draining';
    if (current !== undefined) await this.#retire(entry, current, current.version);
    entry.state = 'stopped';
    this.entries.delete(entry.candidate.id);
    publish('reed:plugin:removed', {
      ...this.#at(entry),
      version: entry.candidate.manifest.metadata.version,
    });
    if (current !== undefined) this.listener.retired?.(entry.candidate.id, current);
  }

  /** Every plugin stopped: dependants before their dependencies, those independent of each other together. */
  async stopAll(): Promise<void> {
    // In layers: each round stops together every plugin that no plugin still running depends on (optional
    // dependencies included), so a dependant always stops before what it depends on, as in reverse load order, but a
    // host's plugins do not each wait for the one before (a container's stop can take seconds: with 18 plugins one
    // after the other, serve's stop passed docker-compose's 60 s grace and was killed with its containers left).
    const left = [...this.entries.values()];
    while (left.length > 0) {
      const running = new Set(left.map((e) => e.candidate.id));
      const needed = new Set(
        left
          .flatMap((e) => e.candidate.manifest.requirements.dependencies.map((d) => d.id))
          .filter((id) => running.has(id)),
      );
      let layer = left.filter((e) => !needed.has(e.candidate.id));
      // A cycle (refused at load, so not expected): the last loaded goes alone, as before.
      if (layer.length === 0) layer = [left.at(-1) as Entry];
      await Promise.all(layer.map((e) => this.stop(e)));
      for (const e of layer) left.splice(left.indexOf(e), 1);
    }
  }

  status(): PluginStatus[] {
    return [...this.entries.values()].map((e) => statusOf(e));
  }
}

/**
 * `id` as V8's internalized string: the one copy of its text that string literals and property names share. A Map
 * compares two internalized keys by address; a manifest's id is a slice of the manifest's text, so each of a call's
 * lookups by a literal id (the bench, a caller's constant) compared the two texts in V8's runtime (String::SlowEquals,
 * ~430 instructions a lookup, two a call: ~2.4 % of a process-mode call's host instructions, callgrind). A property
 * name is internalized when it is defined: that is the copy taken here.
 */
export function internalized(id: string): string {
  return Object.keys({ [id]: 0 })[0] as string;
}

function asReedError(error: unknown, pluginId: string): ReedError {
  return error instanceof ReedError
    ? error
    : new ReedError('init_failed', `plugin "${pluginId}" failed to load: ${(error as Error).message}`, {
        pluginId,
        cause: error,
      });
}

const brief = (error: ReedError) => ({ code: error.code, message: error.message });

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

/** How long each generation's sandbox took to start (the events' `startMs`: the cold-start metric). */
const coldStarts = new WeakMap<Generation, number>();

function startMsOf(generation: Generation): { startMs?: number } {
  const startMs = coldStarts.get(generation);
  return startMs === undefined ? {} : { startMs };
}
