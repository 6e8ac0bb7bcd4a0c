import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino, { type Logger } from 'pino';
import { ContainerRunner } from '../backends/container/container-runner.js';
import { ensurePluginImage, ensureRunnerImage, LABEL_IMAGE_HASH } from '../backends/container/images.js';
import { sessionLabels, sweepContainers } from '../backends/container/sweep.js';
import { InProcessSandbox } from '../backends/in-process/in-process-sandbox.js';
import { LazySandbox } from '../backends/lazy-sandbox.js';
import { sweepCgroups } from '../backends/process/cgroup.js';
import { RunnerProcess } from '../backends/process/runner-process.js';
import type { CallOptions, CallOutcome, Sandbox } from '../backends/sandbox.js';
import { type HostSession, newSession, sweepOrphans } from '../backends/shared/session.js';
import { DEFAULT_SUPERVISION, SupervisedSandbox, type Supervision } from '../backends/supervisor.js';
import { CompileCache } from '../cache/compile-cache.js';
import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { hasSubscribers, publish } from '../events/events.js';
import { logEvents } from '../events/log-subscriber.js';
import { effectiveLimits } from '../manifest/limits.js';
import type { PluginType, SandboxMode } from '../manifest/types.js';
import type { PluginSpec } from '../protocol/messages.js';
import { readCheckedLibrary } from '../runtime/native/check-library.js';
import { NativePlugin } from '../runtime/native/native-plugin.js';
import { compileWasm, prepareWasm } from '../runtime/wasm/compile-wasm.js';
import { WasmPlugin } from '../runtime/wasm/wasm-plugin.js';
import { escapeRawInJson } from '../safe-text.js';
import { bindVerified } from '../signing/bind-verified.js';
import { type VerifiedPlugin, verifyPlugin } from '../signing/signature.js';
import { type HostConfig, loadHostConfig } from './host-config.js';
import { LmdbStorage } from './lmdb-storage.js';
import { type HostServices, PluginHostApi } from './plugin-host-api.js';
import { type ScanResult, scanPlugins } from './scan-plugins.js';
import { MemoryContentService, MemoryEventBus } from './services.js';

export interface PluginHostOptions {
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
  /** Process mode: supervision settings (deadlines, restarts, breaker). */
  supervision?: Partial<Supervision>;
  /**
   * The command that starts a runner (tests use hostile ones). Process mode: default Node with
   * dist/sandbox-runner. Container mode: the program inside the container, default the runner image's.
   */
  runnerCommand?: string[];
  /**
   * Container mode: the image plugin images build on, instead of the runner image built from this package (one
   * made FROM it, with libraries a native plugin needs, or test fixtures). Default: `ensureRunnerImage`.
   */
  runnerImage?: string;
  /**
   * Container mode: the Docker client (another engine, TLS, a shorter timeout). Default: the engine at
   * `$DOCKER_HOST` or /var/run/docker.sock, with a 30 s timeout per request.
   */
  docker?: Docker;
}

export type PluginState = 'ready' | 'failed' | 'stopped';

export interface PluginStatus {
  id: string;
  version: string;
  type: PluginType | undefined;
  mode: SandboxMode;
  state: PluginState;
  error?: { code: string; message: string };
}

interface Entry {
  candidate: ParsedCandidate;
  mode: SandboxMode;
  sandbox?: Sandbox;
  state: PluginState;
  error?: ReedError;
  /** A load being tried again (see #retryLoad). */
  retry?: Promise<void> | undefined;
}

/**
 * The host-facing API every sandbox mode shares: discover, validate and load plugins in dependency order
 * (running each `init`), call them, and stop them in reverse order (running each `deactivate`).
 */
export class PluginHost {
  readonly config: HostConfig;
  readonly scan: ScanResult;
  readonly services: HostServices;
  readonly logger: Logger;
  readonly #entries = new Map<string, Entry>();
  readonly #ownsStorage: boolean;
  readonly #cache: CompileCache | undefined;
  /** This host's identity for the sandboxes it starts (and for the orphan sweep of the next host). */
  readonly session: HostSession = newSession();
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
    this.#cache = this.config.cache.enabled
      ? new CompileCache({
          dir: join(this.config.cacheDir, 'wasm'),
          maxBytes: this.config.cache.maxBytes,
          logger: this.logger,
        })
      : undefined;
    this.scan = scanPlugins(this.config, options.loadedPlugins);
    this.#supervision = options.supervision;
    this.#runnerCommand = options.runnerCommand;
    this.#dockerClient = options.docker;
    this.#dockerInjected = options.docker !== undefined;
    this.#runnerImageOption = options.runnerImage;
  }

  readonly #supervision: Partial<Supervision> | undefined;
  #dockerClient: Docker | undefined;
  readonly #dockerInjected: boolean;
  readonly #runnerImageOption: string | undefined;

  /** The Docker client, made on first use. */
  #docker(): Docker {
    this.#dockerClient ??= new Docker({ timeout: 30_000 });
    return this.#dockerClient;
  }

  /**
   * Removes containers that dead hosts left, when a Docker engine is there to ask (quickly: a host without
   * Docker, or with one that does not answer, starts all the same).
   */
  async #sweepContainers(): Promise<void> {
    if (!this.#dockerInjected && process.env.DOCKER_HOST === undefined && !existsSync('/var/run/docker.sock'))
      return;
    const quick = this.#dockerInjected ? this.#docker() : new Docker({ timeout: 3_000 });
    await sweepContainers(quick, this.logger).catch((error: unknown) =>
      this.logger.debug({ err: error }, 'no Docker engine to sweep'),
    );
  }
  readonly #runnerCommand: string[] | undefined;

  /** Scans, then loads and initialises the valid plugins in dependency order. A plugin that fails to load is `failed`; the others still load. */
  static async start(options: PluginHostOptions = {}): Promise<PluginHost> {
    const host = new PluginHost(options);
    await sweepOrphans(host.config.runtimeDir, host.logger);
    sweepCgroups(host.logger);
    await host.#sweepContainers();
    // The lifecycle log lines come from the events (src/events/log-subscriber.ts), this host's only.
    host.#unsubscribeLogs = logEvents(host.logger, host.session.id);
    try {
      await host.#loadAll(options.plugins);
    } catch (error) {
      await host.close();
      throw error;
    }
    return host;
  }

  readonly #forceMode: SandboxMode | undefined;
  #unsubscribeLogs: (() => void) | undefined;

  async #loadAll(only: string[] | undefined): Promise<void> {
    const wanted = only === undefined ? undefined : this.#withDependencies(only);
    for (const candidate of this.scan.order.load) {
      if (wanted !== undefined && !wanted.has(candidate.id)) continue;
      const mode = this.#forceMode ?? candidate.manifest.sandbox.mode ?? this.config.sandboxMode;
      const entry: Entry = { candidate, mode, state: 'failed' };
      this.#entries.set(candidate.id, entry);
      const failedDependency = candidate.manifest.requirements.dependencies.find(
        (d) => !d.optional && this.#entries.get(d.id)?.state === 'failed',
      );
      if (failedDependency !== undefined) {
        entry.error = new ReedError(
          'dependency_invalid',
          `plugin "${candidate.id}" is not loaded: its dependency "${failedDependency.id}" failed to load`,
          {
            pluginId: candidate.id,
          },
        );
        publish('reed:plugin:failed', { ...this.#at(entry), error: entry.error });
        continue;
      }
      await this.#loadEntry(entry);
    }
  }

  /** Creates and starts the entry's sandbox; on failure the entry is `failed` with a typed error. */
  async #loadEntry(entry: Entry): Promise<void> {
    const { candidate, mode } = entry;
    try {
      const sandbox = this.#createSandbox(candidate, mode);
      await sandbox.start();
      if (this.#closing !== undefined) {
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

  /** What every event about this entry carries. */
  #at(entry: Entry): { session: string; pluginId: string; mode: SandboxMode } {
    return { session: this.session.id, pluginId: entry.candidate.id, mode: entry.mode };
  }

  /**
   * Whether a failed plugin may load now: it failed only because the Docker engine did not answer, or because
   * a required dependency failed that way (and nothing else).
   */
  #retryable(entry: Entry): boolean {
    if (entry.state !== 'failed' || this.#closing !== undefined) return false;
    if (entry.error?.code === 'docker_unavailable') return true;
    if (entry.error?.code !== 'dependency_invalid') return false;
    return this.#requiredDependencies(entry).every((dep) => dep.state === 'ready' || this.#retryable(dep));
  }

  #requiredDependencies(entry: Entry): Entry[] {
    return entry.candidate.manifest.requirements.dependencies
      .filter((d) => !d.optional)
      .map((d) => this.#entries.get(d.id))
      .filter((dep): dep is Entry => dep !== undefined);
  }

  /**
   * Loads a retryable plugin again (its failed dependencies first, in order; one attempt at a time per plugin):
   * the host recovers when the engine comes back, on the next call.
   */
  async #retryLoad(entry: Entry): Promise<void> {
    for (const dep of this.#requiredDependencies(entry)) {
      if (dep.state === 'failed') await this.#retryLoad(dep);
      if (dep.state !== 'ready') return;
    }
    entry.retry ??= this.#loadEntry(entry).finally(() => {
      entry.retry = undefined;
    });
    await entry.retry;
  }

  #withDependencies(ids: string[]): Set<string> {
    const byId = new Map(this.scan.order.load.map((c) => [c.id, c]));
    const wanted = new Set<string>();
    const visit = (id: string) => {
      if (wanted.has(id)) return;
      wanted.add(id);
      for (const d of byId.get(id)?.manifest.requirements.dependencies ?? []) if (byId.has(d.id)) visit(d.id);
    };
    for (const id of ids) visit(id);
    return wanted;
  }

  #createSandbox(candidate: ParsedCandidate, mode: SandboxMode): Sandbox {
    const id = candidate.id;
    const limits = effectiveLimits(candidate.manifest.limits, this.config.limits);
    const at = { pluginId: id };

    const entryPoint = candidate.entryPoint;
    const inventory = candidate.inventory;
    if (entryPoint === undefined || inventory === undefined || candidate.pluginType === undefined) {
      throw new ReedError('entry_point_missing', `plugin "${id}" has no entry point to load`, at);
    }
    const native = candidate.pluginType === 'native';
    const { require, trustedKeys } = this.config.signatures;
    if (native && mode === 'none' && this.config.policy.allowNativeInProcess !== true) {
      throw nativeDenied(
        id,
        'the policy does not allow native code in the host process ([policy] allow_native_in_process)',
      );
    }
    const mustVerify = require === 'all' || (require === 'native' && native) || (native && mode === 'none');
    // Signature failures keep their own codes: tampering (signature_invalid) must not read as a policy refusal.
    // Read once, verify, use those bytes: the manifest must be the verified one and the entry point is loaded from
    // the verified bytes (bindVerified), never from the path again.
    const verified: VerifiedPlugin | undefined = mustVerify
      ? verifyPlugin(inventory.root, trustedKeys, { pluginId: id, limits: this.config.fileLimits })
      : undefined;
    const verifiedBytes = verified === undefined ? undefined : bindVerified(candidate, verified).entryBytes;
    const hostApi = new PluginHostApi(
      id,
      candidate.manifest.permissions,
      limits,
      candidate.manifest.configuration,
      this.services,
      this.logger.child({ sandbox: mode }),
    );
    const wasmOptions = {
      pluginId: id,
      memoryMb: limits.memoryMb,
      tableElements: limits.tableElements,
      fuelPerCall: limits.fuelPerCall,
      fuel: this.config.wasm.fuel,
      maxModuleBytes: this.config.wasm.maxModuleBytes,
      limits: this.config.wasm.limits,
      prepareTimeoutMs: this.config.wasm.prepareTimeoutMs,
      prepareMemoryMb: this.config.wasm.prepareMemoryMb,
      ...(verifiedBytes === undefined ? {} : { bytes: verifiedBytes }),
      ...(this.#cache === undefined ? {} : { cache: this.#cache }),
    };
    // With a signature, the verified bytes themselves are checked and loaded (the private copy is made of them).
    const nativeBytes = () =>
      readCheckedLibrary(entryPoint, id, this.config.fileLimits.maxFileBytes, verifiedBytes);
    if (mode === 'process' || mode === 'container') {
      return new LazySandbox(id, mode, async () => {
        const spec: PluginSpec = {
          id,
          type: candidate.pluginType as 'wasm' | 'native',
          apiVersion: this.config.apiVersion,
          limits,
          wasi: candidate.manifest.wasi,
          hostCalls: true,
          configuration: candidate.manifest.configuration,
        };
        let bytes: Uint8Array;
        if (native) bytes = nativeBytes();
        else {
          const prepared = await prepareWasm(entryPoint, wasmOptions);
          bytes = prepared.bytes;
          spec.exports = prepared.exports;
          spec.isCommand = prepared.isCommand;
          spec.hostCalls = prepared.hostCalls;
        }
        const common = {
          pluginId: id,
          spec,
          bytes,
          host: hostApi,
          limits,
          logger: this.logger.child({ sandbox: mode }),
          runtimeDir: this.config.runtimeDir,
          session: this.session,
        };
        if (mode === 'process') {
          const supervision = { ...DEFAULT_SUPERVISION, ...this.#supervision };
          return new SupervisedSandbox({
            ...common,
            mode: 'process',
            supervision,
            createRunner: () =>
              new RunnerProcess({
                ...common,
                ...(this.#runnerCommand === undefined ? {} : { runnerCommand: this.#runnerCommand }),
                ...(this.config.runnerUids === undefined ? {} : { runnerUids: this.config.runnerUids }),
                network: candidate.manifest.permissions.network && this.config.policy.permissions.network,
                startTimeoutMs: supervision.startTimeoutMs,
              }),
          });
        }
        const docker = this.#docker();
        const images = { docker, logger: this.logger };
        // ensureRunnerImage hashes once per engine, and forgets a failure (the engine may answer next time).
        const runnerImage = this.#runnerImageOption ?? (await ensureRunnerImage(images));
        const pluginImage = await ensurePluginImage(images, runnerImage, inventory.root, id);
        const supervision = { startTimeoutMs: 30_000, ...this.#supervision };
        return new SupervisedSandbox({
          ...common,
          mode: 'container',
          supervision,
          createRunner: () =>
            new ContainerRunner({
              ...common,
              startTimeoutMs: supervision.startTimeoutMs,
              docker,
              image: pluginImage,
              runtime: candidate.manifest.sandbox.runtime ?? this.config.containerRuntime,
              network: candidate.manifest.permissions.network && this.config.policy.permissions.network,
              ...(this.#runnerCommand === undefined ? {} : { command: this.#runnerCommand }),
              labels: {
                'reed.plugin.id': id,
                'reed.plugin.version': candidate.manifest.metadata.version,
                ...sessionLabels(this.session),
                [LABEL_IMAGE_HASH]: pluginImage.split(':')[1] ?? '',
              },
            }),
        });
      });
    }
    if (native) {
      this.logger.warn(
        { pluginId: id, sandbox: mode, signer: verified?.keyId },
        'native plugin runs inside the host process with the host\u2019s full rights: a crash in it takes the host down',
      );
      return new InProcessSandbox(
        id,
        async () =>
          new NativePlugin({
            pluginId: id,
            bytes: nativeBytes(),
            privateDir: join(this.config.runtimeDir, 'native'),
            host: hostApi,
            limits,
            hostApiVersion: this.config.apiVersion,
            warn: (message) => this.logger.warn({ pluginId: id }, message),
          }),
        limits.callTimeoutMs,
      );
    }
    return new InProcessSandbox(
      id,
      async () => {
        const compiled = await compileWasm(entryPoint, wasmOptions);
        return new WasmPlugin({
          pluginId: id,
          module: compiled.module,
          exports: compiled.exports,
          isCommand: compiled.isCommand,
          host: hostApi,
          limits,
          wasi: candidate.manifest.wasi,
        });
      },
      limits.callTimeoutMs,
    );
  }

  status(): PluginStatus[] {
    return [...this.#entries.values()].map((e) => ({
      id: e.candidate.id,
      version: e.candidate.manifest.metadata.version,
      type: e.candidate.pluginType,
      mode: e.mode,
      state: e.state,
      ...(e.error === undefined ? {} : { error: { code: e.error.code, message: e.error.message } }),
    }));
  }

  /** The sandbox of a ready plugin; throws `plugin_not_loaded` or `plugin_failed` otherwise. */
  sandbox(id: string): Sandbox {
    if (this.#closing !== undefined) throw new ReedError('host_closed', 'the plugin host is closed');
    const entry = this.#entries.get(id);
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
    const entry = this.#entries.get(id);
    // The clock is read only when someone listens: this is every call's path.
    const started = hasSubscribers('reed:call:finished') ? performance.now() : undefined;
    let outcome: Promise<CallOutcome>;
    if (entry !== undefined && this.#retryable(entry))
      outcome = this.#retryLoad(entry).then(() => this.sandbox(id).call(fn, bytes, options));
    else {
      try {
        outcome = this.sandbox(id).call(fn, bytes, options);
      } catch (error) {
        outcome = Promise.reject(error);
      }
    }
    return started === undefined ? outcome : this.#published(outcome, id, fn, entry?.mode, started);
  }

  /** Publishes `reed:call:finished` when the call settles; the caller gets the same outcome. */
  async #published(
    outcome: Promise<CallOutcome>,
    pluginId: string,
    fn: string,
    mode: SandboxMode | undefined,
    started: number,
  ): Promise<CallOutcome> {
    const event = { session: this.session.id, pluginId, mode, fn };
    try {
      const result = await outcome;
      const durationMs = performance.now() - started;
      publish('reed:call:finished', {
        ...event,
        code: 'ok',
        durationMs,
        fuelConsumed: result.stats.fuelConsumed,
      });
      return result;
    } catch (error) {
      const code = error instanceof ReedError ? error.code : 'internal_error';
      publish('reed:call:finished', {
        ...event,
        code,
        durationMs: performance.now() - started,
        fuelConsumed: 0,
      });
      throw error;
    }
  }

  /** Deactivates every plugin in reverse dependency order, then releases the services it owns. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const candidate of this.scan.order.shutdown) {
        const entry = this.#entries.get(candidate.id);
        if (entry?.sandbox === undefined) continue;
        let failure: { code: string | undefined; message: string } | undefined;
        try {
          await entry.sandbox.close();
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
      if (this.#ownsStorage) this.services.storage.close();
      this.#unsubscribeLogs?.();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function nativeDenied(pluginId: string, why: string): ReedError {
  return new ReedError(
    'native_in_process_denied',
    `native plugin "${pluginId}" may not run inside the host process (mode none): ${why}. Native code there has the host's full rights; run it in process or container mode, or sign it with a trusted key and set allow_native_in_process = true`,
    { pluginId },
  );
}

/**
 * JSON lines on stderr. pino escapes C0 controls in strings but leaves C1 controls, U+2028/U+2029 and bidi
 * controls raw; on a terminal those repaint it or reorder a line, so they are escaped on the way out too
 * (src/safe-text.ts): the line stays the same JSON.
 */
function defaultLogger(): Logger {
  // Synchronous: a plain stream has no flush on exit, and a line written is a line out (the CLI exits at once).
  const out = pino.destination({ dest: 2, sync: true });
  const stream = { write: (line: string) => out.write(escapeRawInJson(line)) };
  return pino({ name: 'reed-plugins', level: process.env.REED_LOG_LEVEL ?? 'info' }, stream);
}
