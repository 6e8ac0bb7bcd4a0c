import type { Logger } from 'pino';
import type { CompileCache } from '../cache/compile-cache.js';
import type { FilesystemGrant } from '../manifest/data-dir.js';
import type { ResolvedLimits } from '../manifest/limits.js';
import type { PluginPermissions, SandboxMode, WasmAbi } from '../manifest/types.js';
import type { PluginSpec } from '../protocol/messages.js';
import type { HostApi } from '../runtime/host-api.js';
import type { WasmCompileOptions } from '../runtime/wasm/compile-wasm.js';
import type { Sandbox } from './sandbox.js';
import type { HostSession } from './shared/session.js';
import type { UidRange } from './shared/uid-pool.js';

/**
 * Everything a backend needs to start one plugin, decided before anything starts (src/plan/load-plan.ts makes it,
 * as a pure function of the candidate, the host's configuration and the checked bytes).
 */
export interface LoadPlan {
  readonly pluginId: string;
  readonly version: string;
  readonly mode: SandboxMode;
  readonly type: 'wasm' | 'native';
  /** The plugin's directory (a container image is built from it). */
  readonly root: string;
  readonly entryPoint: string;
  /** The entry point's bytes, checked: the verified ones when a signature was required, else as read (bounded). */
  readonly bytes: Uint8Array;
  /** The key id of the verified signer, when a signature was required. */
  readonly signer: string | undefined;
  readonly limits: ResolvedLimits;
  /** WASM: the ABI the manifest says the module speaks (`abi`), checked when it is prepared; undefined: detected. */
  readonly abi?: WasmAbi;
  /**
   * What the plugin may do: its manifest's permissions (validated against the policy), network as granted, and its
   * data directory when `permissions.filesystem` is granted (`hostPath` on the host: `<data_dir>/files/<id>`, made
   * by the host before the backend starts the plan; a backend mounts exactly that directory, and nothing for none).
   */
  readonly grants: {
    readonly permissions: PluginPermissions;
    readonly network: boolean;
    readonly filesystem: FilesystemGrant | undefined;
  };
  /** What a runner is sent; a WASM module's exports and command flag are added once it is prepared. */
  readonly spec: PluginSpec;
  /** Container mode: the runtime (the manifest's, else the host's). */
  readonly containerRuntime: 'runc' | 'runsc';
  /**
   * Scale to zero: ms without a call after which the sandbox is stopped (deactivate first) and started again on the
   * next call (the manifest's `[sandbox] idle_timeout`, else the host's). 0 or absent: never.
   */
  readonly idleTimeoutMs?: number;
  /**
   * `[sandbox] replicas`: how many runners of the plugin, each supervised on its own, behind one ReplicaSet
   * (src/backends/replica-set.ts). 1 or absent: one sandbox, no set. Never above 1 in mode none.
   */
  readonly replicas?: number;
}

/** The host's settings every backend reads (a part of HostConfig: backends sit below the host and never see it). */
export interface BackendSettings {
  readonly runtimeDir: string;
  readonly wasm: Pick<
    WasmCompileOptions,
    'fuel' | 'maxModuleBytes' | 'limits' | 'prepareTimeoutMs' | 'prepareMemoryMb'
  >;
  /** Process mode, host running as root: the uids runners are given. */
  readonly runnerUids?: UidRange | undefined;
  /** Warm pools (`[sandbox.pool]`, src/backends/pool/); absent or sizes 0: none. */
  readonly pool?: PoolSettings | undefined;
}

/** `[sandbox.pool]`: how many warm runners each backend keeps ready, for how long, and with what limits. */
export interface PoolSettings {
  /** Process mode's pool size. */
  readonly process: number;
  /** Container mode's pool size per runtime. */
  readonly container: { readonly runc: number; readonly runsc: number };
  /** How long a warm runner waits before it is replaced by a fresh one. */
  readonly ttlMs: number;
  /**
   * The limits warm runners start with (the host's `[limits]`): what cannot change after a runner starts (the
   * runner's heap flag, the tmpfs size) must match a plugin's for that plugin to be given a warm runner.
   */
  readonly limits: ResolvedLimits;
}

/** What one host gives the backends it makes: shared for all plugins, fixed for the host's life. */
export interface BackendContext<Options = object> {
  readonly settings: BackendSettings;
  readonly logger: Logger;
  readonly session: HostSession;
  readonly cache: CompileCache | undefined;
  /** The embedder's options for this backend (PluginHostOptions carries them). */
  readonly options: Options;
}

/**
 * One sandbox backend (in-process, process, container): it starts plans, and sweeps what a dead host of its kind
 * left. The host looks backends up by mode in src/backends/registry.ts; adding one is a folder and an entry there.
 */
export interface SandboxBackend {
  /** The sandbox that runs this plan; its `start` prepares, starts and initialises the plugin. */
  sandbox(plan: LoadPlan, host: HostApi): Sandbox;
  /** Removes what hosts that are no longer alive left behind (runner directories, cgroups, containers). */
  sweep(): Promise<void>;
  /** After the sweep, before any plugin loads: begins what the backend keeps ready (warm pools). */
  warm?(): void;
  /** At the host's close, after every sandbox stopped: ends what the backend holds (warm pools). */
  close?(): Promise<void>;
}

export type BackendFactory<Options = object> = (context: BackendContext<Options>) => SandboxBackend;
