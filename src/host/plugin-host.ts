import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SandboxBackend } from '../backends/backend.js';
import { type BackendOptions, createBackends } from '../backends/registry.js';
import type { CallOptions, CallOutcome, Sandbox } from '../backends/sandbox.js';
import { type HostSession, newSession } from '../backends/shared/session.js';
import { CompileCache } from '../cache/compile-cache.js';
import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { hasSubscribers } from '../events/events.js';
import { logEvents } from '../events/log-subscriber.js';
import type { SandboxMode } from '../manifest/types.js';
import { ensureDataDir } from '../plan/data-dir.js';
import { planLoad } from '../plan/load-plan.js';
import { readSource } from '../plan/read-source.js';
import { publishedCall } from './call-finished.js';
import { defaultLogger } from './default-logger.js';
import { type HostConfig, loadHostConfig } from './host-config.js';
import { LmdbStorage } from './lmdb-storage.js';
import { type HostServices, PluginHostApi } from './plugin-host-api.js';
import { type Entry, PluginSet, type PluginStatus, withDependencies } from './plugin-set.js';
import { type ScanResult, scanPlugins } from './scan-plugins.js';
import { MemoryContentService, MemoryEventBus } from './services.js';

export type { PluginState, PluginStatus } from './plugin-set.js';

/**
 * All optional. Besides these, each backend's own options (src/backends/registry.ts, BackendOptions):
 * `supervision` (process and container: deadlines, restarts, breaker), `runnerCommand` (the command that starts a
 * runner; tests use hostile ones), `runnerImage` and `docker` (container mode).
 */
export interface PluginHostOptions extends BackendOptions {
  /** Default: `loadHostConfig()` (reed.toml in the working directory, or defaults). */
  config?: HostConfig;
  /** Default: persistent LMDB storage under `data_dir`, in-memory content and events. */
  services?: Partial<HostServices>;
  /** Default: pino at `$REED_LOG_LEVEL` (info) to stderr. */
  logger?: Logger;
  /** Load only these plugins and what they depend on. Default: every valid plugin. */
  plugins?: string[];
  /** Plugins the embedding CMS already runs; they satisfy dependencies. */
  loadedPlugins?: LoadedPlugin[];
  /** Run every plugin in this mode, whatever its manifest asks (the CLI's `--mode`). */
  forceMode?: SandboxMode;
}

export interface RemoveOptions {
  /** Remove the plugins that depend on it too (last loaded first). Default false: refuse with `plugin_has_dependants`. */
  withDependants?: boolean;
}

/**
 * The host-facing API every sandbox mode shares: discover, validate and load plugins in dependency order
 * (running each `init`), call them, change the set while it runs, and stop them in reverse order (running each
 * `deactivate`). Each plugin goes read -> plan (src/plan/) -> the backend of its mode (src/backends/registry.ts).
 */
export class PluginHost {
  readonly config: HostConfig;
  readonly scan: ScanResult;
  readonly services: HostServices;
  readonly logger: Logger;
  /** This host's identity for the sandboxes it starts (and for the orphan sweep of the next host). */
  readonly session: HostSession = newSession();
  readonly #set: PluginSet;
  readonly #backends: Map<SandboxMode, SandboxBackend>;
  readonly #ownsStorage: boolean;
  readonly #forceMode: SandboxMode | undefined;
  #unsubscribeLogs: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(options: PluginHostOptions) {
    this.config = options.config ?? loadHostConfig();
    this.logger = options.logger ?? defaultLogger();
    this.#forceMode = options.forceMode;
    this.#ownsStorage = options.services?.storage === undefined;
    this.services = {
      storage: options.services?.storage ?? new LmdbStorage(join(this.config.dataDir, 'storage')),
      content: options.services?.content ?? new MemoryContentService(),
      events: options.services?.events ?? new MemoryEventBus(),
    };
    const { cache, cacheDir, runtimeDir, wasm, runnerUids } = this.config;
    this.#backends = createBackends({
      settings: { runtimeDir, wasm, runnerUids },
      logger: this.logger,
      session: this.session,
      cache: cache.enabled
        ? new CompileCache({ dir: join(cacheDir, 'wasm'), maxBytes: cache.maxBytes, logger: this.logger })
        : undefined,
      // reed.toml's [supervision] under the embedder's own.
      options: { ...options, supervision: { ...this.config.supervision, ...options.supervision } },
    });
    this.scan = scanPlugins(this.config, options.loadedPlugins);
    this.#set = new PluginSet(
      (candidate, mode) => this.#startSandbox(candidate, mode),
      (candidate) => this.#forceMode ?? candidate.manifest.sandbox.mode ?? this.config.sandboxMode,
      this.session.id,
    );
  }

  /** Scans, then loads and initialises the valid plugins in dependency order. A plugin that fails to load is `failed`; the others still load. */
  static async start(options: PluginHostOptions = {}): Promise<PluginHost> {
    const host = new PluginHost(options);
    // Each backend removes what a dead host of its kind left (runner directories, cgroups, containers).
    for (const backend of host.#backends.values()) await backend.sweep();
    // The lifecycle log lines come from the events (src/events/log-subscriber.ts), this host's only.
    host.#unsubscribeLogs = logEvents(host.logger, host.session.id);
    try {
      const wanted =
        options.plugins === undefined ? undefined : withDependencies(host.scan.order.load, options.plugins);
      for (const candidate of host.scan.order.load)
        if (wanted === undefined || wanted.has(candidate.id)) await host.#set.load(candidate);
    } catch (error) {
      await host.close();
      throw error;
    }
    return host;
  }

  /** Reads and checks the plugin's bytes (I/O), plans its load (pure), and has its mode's backend start it. */
  async #startSandbox(candidate: ParsedCandidate, mode: SandboxMode): Promise<Sandbox> {
    const plan = planLoad(candidate, mode, this.config, readSource(candidate, mode, this.config));
    if (plan.grants.filesystem !== undefined) ensureDataDir(this.config.dataDir, plan.pluginId);
    const backend = this.#backends.get(mode);
    if (backend === undefined)
      throw new ReedError('sandbox_unavailable', `no backend for sandbox mode "${mode}"`, {
        pluginId: plan.pluginId,
      });
    const hostApi = new PluginHostApi(
      plan.pluginId,
      plan.grants.permissions,
      plan.limits,
      plan.spec.configuration,
      this.services,
      this.logger.child({ sandbox: mode }),
    );
    const sandbox = backend.sandbox(plan, hostApi);
    await sandbox.start();
    return sandbox;
  }

  /**
   * Adds a validated plugin while the host runs, after what it depends on (which must be in the set). Resolves with
   * its status (`failed` with the error when it did not load); `plugin_already_loaded` if the id is taken.
   */
  add(candidate: ParsedCandidate): Promise<PluginStatus> {
    return this.#set.serially(async () => {
      this.#assertChangeable(candidate);
      if (this.#set.entries.has(candidate.id))
        throw new ReedError(
          'plugin_already_loaded',
          `plugin "${candidate.id}" is already in the host; replace it instead`,
          {
            pluginId: candidate.id,
          },
        );
      return this.#statusOf(await this.#set.load(candidate));
    });
  }

  /**
   * Replaces a plugin with another candidate of the same id (another version, say): its dependants are stopped
   * first (last loaded first), then it, then the new one starts in its place and the dependants start again.
   */
  replace(id: string, candidate: ParsedCandidate): Promise<PluginStatus> {
    return this.#set.serially(async () => {
      this.#assertChangeable(candidate);
      const entry = this.#loaded(id);
      if (candidate.id !== id)
        throw new ReedError(
          'plugin_invalid',
          `plugin "${id}" can be replaced only by a candidate with its id, not "${candidate.id}"`,
          {
            pluginId: id,
          },
        );
      const dependants = this.#set.dependantsOf(id);
      for (const dependant of [...dependants].reverse()) await this.#set.stop(dependant);
      await this.#set.stop(entry);
      const next = await this.#set.load(candidate);
      for (const dependant of dependants) await this.#set.load(dependant.candidate);
      return this.#statusOf(next);
    });
  }

  /**
   * Stops and removes a plugin. With dependants, refuses (`plugin_has_dependants`) unless `withDependants`, which
   * removes them first, last loaded first. Resolves with the ids removed, in the order they were stopped.
   */
  remove(id: string, options: RemoveOptions = {}): Promise<string[]> {
    return this.#set.serially(async () => {
      if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
      const entry = this.#loaded(id);
      const dependants = this.#set.dependantsOf(id);
      if (dependants.length > 0 && options.withDependants !== true) {
        const ids = dependants.map((d) => d.candidate.id);
        throw new ReedError(
          'plugin_has_dependants',
          `plugin "${id}" is needed by ${ids.map((d) => `"${d}"`).join(', ')}: remove those first, or pass withDependants`,
          { pluginId: id, details: { dependants: ids } },
        );
      }
      const removed: string[] = [];
      for (const e of [entry, ...dependants].reverse()) {
        await this.#set.stop(e);
        this.#set.entries.delete(e.candidate.id);
        removed.push(e.candidate.id);
      }
      return removed;
    });
  }

  #assertChangeable(candidate: ParsedCandidate): void {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    if (candidate.status !== 'valid')
      throw new ReedError(
        'plugin_invalid',
        `plugin "${candidate.id}" is ${candidate.status}: fix its errors first`,
        {
          pluginId: candidate.id,
        },
      );
  }

  #loaded(id: string): Entry {
    const entry = this.#set.entries.get(id);
    if (entry === undefined)
      throw new ReedError('plugin_not_loaded', `plugin "${id}" is not in the host`, { pluginId: id });
    return entry;
  }

  #statusOf(entry: Entry): PluginStatus {
    return this.#set.status().find((s) => s.id === entry.candidate.id) as PluginStatus;
  }

  status(): PluginStatus[] {
    return this.#set.status();
  }

  /** The sandbox of a ready plugin; throws `plugin_not_loaded` or `plugin_failed` otherwise. */
  sandbox(id: string): Sandbox {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    const entry = this.#set.entries.get(id);
    if (entry === undefined) {
      const found = this.scan.candidates.find((c) => c.id === id);
      const why = found === undefined ? 'no plugin with that id was found' : `it is ${found.status}`;
      throw new ReedError('plugin_not_loaded', `plugin "${id}" is not loaded: ${why}`, { pluginId: id });
    }
    if (entry.sandbox === undefined || entry.state !== 'ready') {
      throw new ReedError(
        'plugin_failed',
        `plugin "${id}" failed to load: ${entry.error?.code}: ${entry.error?.message}`,
        {
          pluginId: id,
          cause: entry.error,
          ...(entry.error === undefined ? {} : { details: { causeCode: entry.error.code } }),
        },
      );
    }
    return entry.sandbox;
  }

  call(
    id: string,
    fn: string,
    input: Uint8Array | string = new Uint8Array(0),
    options?: CallOptions,
  ): Promise<CallOutcome> {
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    const entry = this.#set.entries.get(id);
    // The clock is read only when someone listens: this is every call's path.
    const started = hasSubscribers('reed:call:finished') ? performance.now() : undefined;
    let outcome: Promise<CallOutcome>;
    if (entry !== undefined && this.#set.retryable(entry))
      outcome = this.#set.retryLoad(entry).then(() => this.sandbox(id).call(fn, bytes, options));
    else {
      try {
        outcome = this.sandbox(id).call(fn, bytes, options);
      } catch (error) {
        outcome = Promise.reject(error);
      }
    }
    if (started === undefined) return outcome;
    return publishedCall(outcome, { session: this.session.id, pluginId: id, mode: entry?.mode, fn }, started);
  }

  /** Deactivates every plugin in reverse dependency order, then releases the services it owns. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#set.closed = true;
      // After any set change under way: it would otherwise start a sandbox that nothing stops.
      await this.#set.serially(() => this.#set.stopAll());
      if (this.#ownsStorage) this.services.storage.close();
      this.#unsubscribeLogs?.();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
