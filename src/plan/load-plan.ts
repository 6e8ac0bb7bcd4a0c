import type { LoadPlan } from '../backends/backend.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import type { FileLimits } from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';
import { effectiveLimits, type ResolvedLimits } from '../manifest/limits.js';
import type { SandboxMode } from '../manifest/types.js';
import type { HostPolicy } from '../validation/context.js';

/** The part of the host's configuration planning reads (HostConfig has it all). */
export interface PlanningConfig {
  readonly apiVersion: string;
  readonly limits: ResolvedLimits;
  readonly containerRuntime: 'runc' | 'runsc';
  readonly policy: Pick<HostPolicy, 'allowNativeInProcess' | 'permissions'>;
  readonly signatures: {
    readonly require: 'none' | 'native' | 'all';
    readonly trustedKeys: readonly Buffer[];
  };
  readonly fileLimits: FileLimits;
  readonly wasm: { readonly maxModuleBytes: number };
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
    grants: {
      permissions: manifest.permissions,
      network: manifest.permissions.network && config.policy.permissions.network,
    },
    spec: {
      id: candidate.id,
      type,
      apiVersion: config.apiVersion,
      limits,
      wasi: manifest.wasi,
      hostCalls: true,
      configuration: manifest.configuration,
    },
    containerRuntime: manifest.sandbox.runtime ?? config.containerRuntime,
  };
}

function nativeDenied(pluginId: string, why: string): ReedError {
  return new ReedError(
    'native_in_process_denied',
    `native plugin "${pluginId}" may not run inside the host process (mode none): ${why}. Native code there has the host's full rights; run it in process or container mode, or sign it with a trusted key and set allow_native_in_process = true`,
    { pluginId },
  );
}
