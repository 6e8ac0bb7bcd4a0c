// Over 300 lines: this is the host's public API (start, call, status, add, replace, install, reload, remove, close)
// and the one place that wires configuration, store, backends and the plugin set; each method is short and the
// work is in plugin-set.ts, installer.ts and the backends.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { LoadPlan, SandboxBackend } from '../backends/backend.js';
import { type BackendOptions, createBackends } from '../backends/registry.js';
import type { CallOptions, CallOutcome, Sandbox } from '../backends/sandbox.js';
import { now } from '../backends/shared/call-deadlines.js';
import { eventSource, type HostSession, newSession } from '../backends/shared/session.js';
import { CompileCache } from '../cache/compile-cache.js';
import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { hasCallSubscribers, soleCallRecorder } from '../events/events.js';
import { logEvents } from '../events/log-subscriber.js';
import type { SandboxMode } from '../manifest/types.js';
import { ensureDataDir, onUnjournaledExt4 } from '../plan/data-dir.js';
import { planLoad } from '../plan/load-plan.js';
import { readSource } from '../plan/read-source.js';
import { checkCallWasi } from '../runtime/call-wasi.js';
import type { TenantIdentity } from '../tenant-quotas.js';
import { checkTraceParent, type TraceParent } from '../trace-context.js';
import { type CallEvents, type CallWatch, callFailed, watchedCall } from './call-finished.js';
import { defaultLogger } from './default-logger.js';
import type { Generation } from './generation.js';
import { type HostConfig, loadHostConfig } from './host-config.js';
import { InstallSlots } from './install-slots.js';
import { Installer } from './installer.js';
import { LmdbStorage } from './lmdb-storage.js';
import { type HostServices, PluginHostApi } from './plugin-host-api.js';
import { type Entry, internalized, PluginSet, type PluginStatus, withDependencies } from './plugin-set.js';
import { statusOf } from './plugin-status.js';
import { PluginStore } from './plugin-store.js';
import { type ScanResult, scanPlugins } from './scan-plugins.js';
import { MemoryContentService, MemoryEventBus } from './services.js';
import { traced, tracedCall, tracingEnabled } from './tracing.js';

export type { LifecycleRecord, PluginState, PluginStatus } from './plugin-set.js';

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
  /**
   * Load the plugins installed through the API (kept under data_dir) even when `plugins` names others: `serve`
   * does, so that what was installed comes back after a restart. Default false (`call` loads what it needs).
   */
  withInstalled?: boolean;
  /**
   * The tenant this host serves (src/tenants/registry.ts makes one host per tenant). Its id goes on the host's
   * events (`tenant`) and its containers' labels (`reed.tenant`); the backends read its memory and CPU quotas.
   * Absent: the default tenant, as before tenants existed.
   */
  tenant?: TenantIdentity;
  /** This host's identity (default: a new one). The tenant registry makes it first, to know its events from the start. */
  session?: HostSession;
  /**
   * The bound on archives taken in at once, which hosts that serve together share (the tenant registry gives every
   * tenant's host one). Default: this host's own, from `[lifecycle] max_concurrent_installs` and `install_queue`.
   */
  installSlots?: InstallSlots;
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
  readonly session: HostSession;
  readonly #set: PluginSet;
  readonly #backends: Map<SandboxMode, SandboxBackend>;
  readonly #ownsStorage: boolean;
  readonly #forceMode: SandboxMode | undefined;
  readonly #store: PluginStore;
  readonly #installer: Installer;
  readonly #embedderPlugins: LoadedPlugin[];
  #unsubscribeLogs: (() => void) | undefined;
  #unwatchBreakers: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  /** The tenant on this host's spans. */
  readonly #tenantId: string;
  /**
   * `session.id` and `session.tenant` as every call's event carries them: V8's internalized copies, so that a
   * subscriber comparing them with an earlier event's (the metrics registry's last series, a log filter) compares
   * addresses; the id is hex text made at run time, whose comparison called V8's StringEqual on every call.
   */
  readonly #eventSession: string;
  readonly #eventTenant: string | undefined;

  private constructor(options: PluginHostOptions) {
    this.session = options.session ?? newSession();
    if (options.tenant !== undefined) this.session.tenant ??= options.tenant.id;
    this.#tenantId = options.tenant?.id ?? 'default';
    this.#eventSession = internalized(this.session.id);
    this.#eventTenant = this.session.tenant === undefined ? undefined : internalized(this.session.tenant);
    this.config = options.config ?? loadHostConfig();
    this.logger = options.logger ?? defaultLogger();
    // First: an unreadable pointer stops the start before anything is opened (store_unreadable).
    this.#store = new PluginStore(this.config.dataDir, this.session, this.logger);
    this.#store.open();
    this.#forceMode = options.forceMode;
    this.#embedderPlugins = options.loadedPlugins ?? [];
    this.#ownsStorage = options.services?.storage === undefined;
    this.services = {
      storage: options.services?.storage ?? new LmdbStorage(join(this.config.dataDir, 'storage')),
      content: options.services?.content ?? new MemoryContentService(),
      events: options.services?.events ?? new MemoryEventBus(),
    };
    const { cache, cacheDir, runtimeDir, wasm, runnerUids, pool } = this.config;
    this.#backends = createBackends({
      settings: { runtimeDir, wasm, runnerUids, pool },
      logger: this.logger,
      session: this.session,
      cache: cache.enabled
        ? new CompileCache({ dir: join(cacheDir, 'wasm'), maxBytes: cache.maxBytes, logger: this.logger })
        : undefined,
      // reed.toml's [supervision] under the embedder's own.
      options: { ...options, supervision: { ...this.config.supervision, ...options.supervision } },
    });
    // Installed plugins first: what was installed through the API wins over a copy in plugin_dirs.
    const installed = [...this.#store.installed().values()].map((p) => p.path);
    this.scan = scanPlugins(
      { ...this.config, searchPaths: [...installed, ...this.config.searchPaths] },
      options.loadedPlugins,
    );
    this.#set = new PluginSet(
      {
        plan: (candidate, mode) =>
          planLoad(candidate, mode, this.config, readSource(candidate, mode, this.config)),
        start: (plan) => this.#startPlan(plan),
      },
      (candidate) => this.#forceMode ?? candidate.manifest.sandbox.mode ?? this.config.sandboxMode,
      eventSource(this.session),
      this.config.lifecycle,
    );
    this.#installer = new Installer(
      this.#store,
      this.config,
      options.installSlots ??
        new InstallSlots(this.config.lifecycle.maxConcurrentInstalls, this.config.lifecycle.installQueue),
      this.#set,
      (id) => this.#others(id),
      (candidate) => this.#assertChangeable(candidate),
    );
    this.#set.listener = this.#installer;
  }

  /** Every plugin but `id`, as validation sees them: the set's and the embedder's. */
  #others(id: string): LoadedPlugin[] {
    const mine = [...this.#set.entries.values()]
      .filter((e) => e.candidate.id !== id && e.state !== 'failed')
      .map((e) => ({ id: e.candidate.id, version: e.candidate.manifest.metadata.version }));
    return [...mine, ...this.#embedderPlugins.filter((p) => p.id !== id)];
  }

  /** Scans, then loads and initialises the valid plugins in dependency order. A plugin that fails to load is `failed`; the others still load. */
  static async start(options: PluginHostOptions = {}): Promise<PluginHost> {
    const host = new PluginHost(options);
    // Each backend removes what a dead host of its kind left (runner directories, cgroups, containers).
    for (const backend of host.#backends.values()) await backend.sweep();
    // Then warm pools begin to fill ([sandbox.pool]; none by default).
    for (const backend of host.#backends.values()) backend.warm?.();
    // And what a dead host left in the store: staging directories, versions nothing points to.
    await host.#store.sweep();
    // The lifecycle log lines come from the events (src/events/log-subscriber.ts), this host's only.
    host.#unsubscribeLogs = logEvents(host.logger, host.session.id);
    host.#unwatchBreakers = host.#set.watchBreakers();
    try {
      const installed = options.withInstalled === true ? [...host.#store.installed().keys()] : [];
      const wanted =
        options.plugins === undefined
          ? undefined
          : withDependencies(host.scan.order.load, [...options.plugins, ...installed]);
      for (const candidate of host.scan.order.load)
        if (wanted === undefined || wanted.has(candidate.id))
          await host.#traced('reed.load', candidate, () => host.#set.load(candidate));
    } catch (error) {
      await host.close();
      throw error;
    }
    return host;
  }

  /** Whether data_dir's file system was looked at (#warnIfUnjournaled: once a host). */
  #dataDirChecked = false;

  /** A warning, once, when plugins' data directories are on ext4 without a journal, where fuel under-prices names. */
  #warnIfUnjournaled(): void {
    if (this.#dataDirChecked) return;
    this.#dataDirChecked = true;
    if (!onUnjournaledExt4(this.config.dataDir)) return;
    this.logger.warn(
      { code: 'data_dir_unjournaled', dataDir: this.config.dataDir },
      `data_dir ${this.config.dataDir} is on ext4 without a journal: there each name a plugin makes after many were removed can cost up to ~1 ms of kernel CPU for a few µs of fuel (docs/SECURITY.md); a journaled ext4, xfs or tmpfs does not`,
    );
  }

  /**
   * Has the plan's backend start it (the set planned it first: the plugin's bytes read and checked, then the pure
   * plan). A rollback starts a kept plan again.
   */
  async #startPlan(plan: LoadPlan): Promise<Sandbox> {
    const { mode } = plan;
    if (plan.grants.filesystem !== undefined) {
      ensureDataDir(this.config.dataDir, plan.pluginId);
      this.#warnIfUnjournaled();
    }
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
      return this.#statusOf(await this.#traced('reed.load', candidate, () => this.#set.load(candidate)));
    });
  }

  /** A lifecycle span (src/host/tracing.ts) around a load or a change of one plugin: its outcome is the status's. */
  #traced<T extends Entry | PluginStatus>(
    name: string,
    plugin: ParsedCandidate | string,
    work: () => Promise<T>,
  ): Promise<T> {
    const attributes = {
      'reed.plugin': typeof plugin === 'string' ? plugin : plugin.id,
      'reed.tenant': this.#tenantId,
      ...(typeof plugin === 'string' ? {} : { 'reed.version': plugin.manifest.metadata.version }),
    };
    return traced(name, attributes, work, (result) =>
      result.state === 'failed' ? (result.error ?? new ReedError('plugin_failed', 'failed')) : undefined,
    );
  }

  /**
   * Upgrades a plugin to another candidate of the same id (another version, say) without dropping a call: the new
   * one starts beside the old one and takes new calls once ready, the old one finishes its calls in flight and is
   * stopped (PluginSet.upgrade: rollback on probation, dependency ranges). A plugin that failed to load is loaded
   * from the new candidate the same way. A new version that does not start rejects with its failure's code, and
   * the old one keeps serving. Dependants keep running.
   */
  replace(id: string, candidate: ParsedCandidate): Promise<PluginStatus> {
    return this.#set.serially(async () => {
      this.#assertChangeable(candidate);
      const entry = this.#loaded(id);
      if (candidate.id !== id)
        throw new ReedError(
          'plugin_invalid',
          `plugin "${id}" can be replaced only by a candidate with its id, not "${candidate.id}"`,
          { pluginId: id },
        );
      return this.#statusOf(
        await this.#traced('reed.upgrade', candidate, () => this.#set.upgrade(entry, candidate)),
      );
    });
  }

  /**
   * Installs a plugin from a tar archive of its directory (`PUT /v1/admin/plugins/{id}`): refused with a code and
   * nothing written when the archive is not a clean tree (`install_archive_invalid`), its manifest's id is not `id`
   * (`install_id_mismatch`) or it is not valid; otherwise kept under data_dir and started, as a new plugin or as
   * an upgrade with drain (see `replace`). It survives a restart. Resolves with its status.
   */
  async install(id: string, archive: Readable): Promise<PluginStatus> {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    return statusOf(await this.#traced('reed.install', id, () => this.#installer.install(id, archive)));
  }

  /** The upgrade path again from the plugin's directory on disk: its files read, checked, planned, started. */
  async reload(id: string): Promise<PluginStatus> {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    return statusOf(await this.#traced('reed.reload', id, () => this.#installer.reload(id)));
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
        this.#installer.forget(e.candidate.id);
        await this.#set.remove(e);
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
    return statusOf(entry);
  }

  status(): PluginStatus[] {
    return this.#set.status();
  }

  /** The directories of the plugins in the set that came from plugin_dirs (not installed), by id: what --watch watches. */
  watchableDirs(): Map<string, string> {
    return new Map(
      [...this.#set.entries.values()]
        .filter((e) => !this.#store.owns(e.candidate.pluginDir))
        .map((e) => [e.candidate.id, e.candidate.pluginDir] as const),
    );
  }

  /** One plugin's status; throws `plugin_not_loaded` when the host has no plugin with that id. */
  pluginStatus(id: string): PluginStatus {
    return this.#statusOf(this.#loaded(id));
  }

  /** The sandbox that serves a ready plugin now; throws `plugin_not_loaded` or `plugin_failed` otherwise. */
  sandbox(id: string): Sandbox {
    return this.#serving(id).sandbox;
  }

  #serving(id: string): Generation {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    const entry = this.#set.entries.get(id);
    if (entry === undefined || entry.state === 'draining') {
      const found = this.scan.candidates.find((c) => c.id === id);
      const why =
        entry !== undefined
          ? 'it is being removed'
          : found === undefined
            ? 'no plugin with that id was found'
            : `it is ${found.status}`;
      throw new ReedError('plugin_not_loaded', `plugin "${id}" is not loaded: ${why}`, { pluginId: id });
    }
    if (entry.current === undefined || entry.state !== 'ready') {
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
    return entry.current;
  }

  call(
    id: string,
    fn: string,
    input: Uint8Array | string = new Uint8Array(0),
    options?: CallOptions,
  ): Promise<CallOutcome> {
    const bytes = typeof input === 'string' ? Buffer.from(input) : input;
    if (options?.traceParent === undefined && !tracingEnabled()) return this.#call(id, fn, bytes, options);
    let parent: TraceParent | undefined;
    try {
      parent = checkTraceParent(options?.traceParent, id);
    } catch (error) {
      return Promise.reject(error);
    }
    const { traceParent: _, ...rest } = options ?? {};
    if (!tracingEnabled()) return this.#call(id, fn, bytes, rest);
    const attributes = {
      'reed.plugin': id,
      'reed.tenant': this.#tenantId,
      'reed.mode': this.#set.entries.get(id)?.mode ?? 'unknown',
      'reed.function': fn,
    };
    return tracedCall(attributes, parent, (traceParent) =>
      this.#call(id, fn, bytes, { ...rest, traceParent }),
    );
  }

  #call(id: string, fn: string, bytes: Uint8Array, options: CallOptions | undefined): Promise<CallOutcome> {
    const entry = this.#set.entries.get(id);
    // One clock read a call, shared by the sandbox's deadline (mode none) and the call's event.
    const startedAt = now();
    // Watched only when someone listens: this is every call's path. The event itself (CallWatch), a literal here
    // rather than made in a function: V8 allocates a literal inline in the caller's optimized code, where a call
    // to a function that made it was not always inlined (~80 instructions a call, callgrind); not a class either
    // (Node 20 built one through its generic construct stub, ~2.5x the cost). Its `durationMs` holds the call's
    // start until it settles.
    // When the metrics registry is the only subscriber, a call the sandbox settles at once (mode none) adds to its
    // series without the event (Generation.call; ~90 bytes and the dispatch less a call): `events` then makes the
    // event only for a call that needs one.
    const events = hasCallSubscribers()
      ? soleCallRecorder() === undefined
        ? undefined
        : this.#events
      : undefined;
    const watch: CallWatch | undefined =
      events === undefined && hasCallSubscribers()
        ? {
            session: this.#eventSession,
            tenant: this.#eventTenant,
            pluginId: id,
            mode: entry?.mode,
            fn,
            code: 'ok',
            durationMs: startedAt,
            fuelConsumed: 0,
          }
        : undefined;
    if (entry !== undefined && this.#set.retryable(entry)) {
      // Its deadline counts from when the load is done, as it always has: no startedAt for the sandbox.
      const outcome = this.#set
        .retryLoad(entry)
        .then(() => this.#serving(id).call(fn, bytes, checkedCallOptions(id, options)));
      const watched = watch ?? events?.callEvent(id, entry.mode, fn, startedAt);
      return watched === undefined ? outcome : watchedCall(outcome, watched);
    }
    try {
      // The generation serving at this moment takes the call: an upgrade that switches later lets it finish here.
      return this.#serving(id).call(fn, bytes, checkedCallOptions(id, options), startedAt, watch, events);
    } catch (error) {
      const watched = watch ?? events?.callEvent(id, entry?.mode, fn, startedAt);
      if (watched !== undefined) callFailed(watched, error);
      return Promise.reject(error);
    }
  }

  /** Generation.call's CallEvents for this host: the same event as #call's literal, and the recorder's sink. */
  readonly #events: CallEvents = {
    callEvent: (pluginId, mode, fn, startedAt) => ({
      session: this.#eventSession,
      tenant: this.#eventTenant,
      pluginId,
      mode,
      fn,
      code: 'ok',
      durationMs: startedAt,
      fuelConsumed: 0,
    }),
    sinkOf: (recorder, pluginId, mode) =>
      recorder.sinkOf(this.#eventSession, this.#eventTenant, pluginId, mode),
  };

  /** Deactivates every plugin in reverse dependency order, then releases the services it owns. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#set.closed = true;
      // After any set change under way: it would otherwise start a sandbox that nothing stops.
      await this.#set.serially(() => this.#set.stopAll());
      // Warm runners no plugin was given (src/backends/pool/).
      for (const backend of this.#backends.values()) await backend.close?.();
      if (this.#ownsStorage) this.services.storage.close();
      this.#unwatchBreakers?.();
      this.#unsubscribeLogs?.();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * `options` with their WASI arguments and environment checked (src/runtime/call-wasi.ts), here for every mode, so
 * that each refuses the same with the same code before anything reaches a sandbox.
 */
function checkedCallOptions(id: string, options: CallOptions | undefined): CallOptions | undefined {
  if (options?.wasi === undefined) return options;
  const { wasi, ...rest } = options;
  const checked = checkCallWasi(id, wasi);
  return checked === undefined ? rest : { ...rest, wasi: checked };
}
