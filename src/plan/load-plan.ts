import type { LoadPlan } from '../backends/backend.js';
import { RUNNER_DATA_DIR } from '../backends/shared/runner-program.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import type { FileLimits } from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';
import { type FilesystemGrant, filesystemGrant, pluginDataDir } from '../manifest/data-dir.js';
import { effectiveLimits, type ResolvedLimits } from '../manifest/limits.js';
import { replicasInModeNone } from '../manifest/parse-manifest.js';
import type { AccessLevel, SandboxMode } from '../manifest/types.js';
import type { HostPolicy } from '../validation/context.js';

/** The part of the host's configuration planning reads (HostConfig has it all). */
export interface PlanningConfig {
  readonly apiVersion: string;
  readonly limits: ResolvedLimits;
  readonly containerRuntime: 'runc' | 'runsc';
  /** `[sandbox] idle_timeout` in ms (0: off): the default of plugins whose manifest sets none. */
  readonly idleTimeoutMs?: number;
  readonly policy: Pick<HostPolicy, 'allowNativeInProcess' | 'permissions'>;
  readonly signatures: {
    readonly require: 'none' | 'native' | 'all';
    readonly trustedKeys: readonly Buffer[];
  };
  readonly fileLimits: FileLimits;
  readonly wasm: { readonly maxModuleBytes: number };
  /** Where plugins' data directories live (`<data_dir>/files/<plugin id>`). */
  readonly dataDir: string;
}

/** The entry point's bytes as the step before planning read them (src/plan/read-source.ts). */
export interface CheckedSource {
  /** Verified against the signature when one was required, else read with the size bound; a library checked. */
  readonly bytes: Uint8Array;
  /** The verified signer's key id, when a signature was required. */
  readonly signer: string | undefined;
}

/** What a candidate is, once it is known that it may be loaded in this mode at all. */
export interface Admitted {
  readonly type: 'wasm' | 'native';
  readonly entryPoint: string;
  readonly root: string;
}

/**
 * Whether this candidate may be loaded in this mode at all, before anything is read: it has an entry point, and
 * native code goes into the host process only where the policy allows. Pure.
 */
export function admit(candidate: ParsedCandidate, mode: SandboxMode, config: PlanningConfig): Admitted {
  const id = candidate.id;
  const { entryPoint, inventory, pluginType } = candidate;
  if (entryPoint === undefined || inventory === undefined || pluginType === undefined) {
    throw new ReedError('entry_point_missing', `plugin "${id}" has no entry point to load`, { pluginId: id });
  }
  if (pluginType === 'native' && mode === 'none' && config.policy.allowNativeInProcess !== true) {
    throw nativeDenied(
      id,
      'the policy does not allow native code in the host process ([policy] allow_native_in_process)',
    );
  }
  return { type: pluginType, entryPoint, root: inventory.root };
}

/** Whether loading needs a verified signature: per `[signatures] require`, and always for native code in the host. */
export function signatureRequired(
  type: 'wasm' | 'native',
  mode: SandboxMode,
  config: PlanningConfig,
): boolean {
  const { require } = config.signatures;
  const native = type === 'native';
  return require === 'all' || (require === 'native' && native) || (native && mode === 'none');
}

/**
 * Turns a validated candidate and its checked bytes into a load plan: the mode, the limits (the manifest's over the
 * host's defaults), what the plugin is granted, the spec a runner is sent, the signer. Pure: no I/O, no clock, so
 * a plan can be made, compared or shown without starting anything; a backend starts it.
 */
export function planLoad(
  candidate: ParsedCandidate,
  mode: SandboxMode,
  config: PlanningConfig,
  source: CheckedSource,
): LoadPlan {
  const { type, entryPoint, root } = admit(candidate, mode, config);
  const { manifest } = candidate;
  const limits = effectiveLimits(manifest.limits, config.limits);
  const filesystem = grantFilesystem(candidate, type, config, limits);
  return {
    pluginId: candidate.id,
    version: manifest.metadata.version,
    mode,
    type,
    root,
    entryPoint,
    bytes: source.bytes,
    signer: source.signer,
    limits,
    ...(manifest.abi === undefined ? {} : { abi: manifest.abi }),
    grants: {
      permissions: manifest.permissions,
      network: manifest.permissions.network && config.policy.permissions.network,
      filesystem,
    },
    spec: {
      id: candidate.id,
      type,
      apiVersion: config.apiVersion,
      limits,
      wasi: manifest.wasi,
      hostCalls: true,
      configuration: manifest.configuration,
      // The runtime's view of the directory: the host's path in mode none, the bind mount's in a runner.
      ...(filesystem === undefined
        ? {}
        : { filesystem: mode === 'none' ? filesystem : { ...filesystem, hostPath: RUNNER_DATA_DIR } }),
    },
    containerRuntime: manifest.sandbox.runtime ?? config.containerRuntime,
    idleTimeoutMs: manifest.sandbox.idleTimeoutMs ?? config.idleTimeoutMs ?? 0,
    replicas: planReplicas(candidate, mode),
  };
}

/** `[sandbox] replicas` (1 when absent); above 1 refused in mode none, whoever chose the mode (the host's default). */
function planReplicas(candidate: ParsedCandidate, mode: SandboxMode): number {
  const replicas = candidate.manifest.sandbox.replicas ?? 1;
  if (replicas > 1 && mode === 'none')
    throw new ReedError(
      'replicas_unsupported',
      `plugin "${candidate.id}" in ${candidate.manifestPath}: ${replicasInModeNone(replicas)}`,
      { pluginId: candidate.id, file: candidate.manifestPath, field: 'sandbox.replicas' },
    );
  return replicas;
}

const LEVEL_RANK: Record<AccessLevel, number> = { none: 0, read: 1, readwrite: 2 };

/**
 * The data directory a plugin is given: what its manifest asks, which validation has checked against the policy
 * and the plugin type; checked again here, so a plan never grants more than the policy (a candidate changed or made
 * by hand after validation). Undefined for "none".
 */
function grantFilesystem(
  candidate: ParsedCandidate,
  type: 'wasm' | 'native',
  config: PlanningConfig,
  limits: ResolvedLimits,
): FilesystemGrant | undefined {
  const asked = candidate.manifest.permissions.filesystem;
  if (asked === 'none') return undefined;
  const at = { pluginId: candidate.id, file: candidate.manifestPath, field: 'permissions.filesystem' };
  if (type === 'native') {
    throw new ReedError(
      'filesystem_unsupported',
      `native plugin "${candidate.id}" asks for filesystem access "${asked}" in ${candidate.manifestPath}: only WASM plugins get a data directory`,
      at,
    );
  }
  const allowed = config.policy.permissions.filesystem;
  if (LEVEL_RANK[asked] > LEVEL_RANK[allowed]) {
    throw new ReedError(
      'permission_denied_by_policy',
      `plugin "${candidate.id}" asks for filesystem access "${asked}" in ${candidate.manifestPath}, and the host policy allows at most "${allowed}" ([policy.permissions] filesystem in reed.toml)`,
      at,
    );
  }
  const guestName = candidate.manifest.wasi.preopen;
  return filesystemGrant(asked, limits, pluginDataDir(config.dataDir, candidate.id), guestName);
}

function nativeDenied(pluginId: string, why: string): ReedError {
  return new ReedError(
    'native_in_process_denied',
    `native plugin "${pluginId}" may not run inside the host process (mode none): ${why}. Native code there has the host's full rights; run it in process or container mode, or sign it with a trusted key and set allow_native_in_process = true`,
    { pluginId },
  );
}
