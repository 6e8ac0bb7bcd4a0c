import type { ParsedCandidate } from '../discovery/candidate.js';
import type { SandboxMode } from '../manifest/types.js';
import { readCheckedLibrary } from '../runtime/native/check-library.js';
import { readModule } from '../runtime/wasm/compile-wasm.js';
import { bindVerified } from '../signing/bind-verified.js';
import { verifyPlugin } from '../signing/signature.js';
import { admit, type CheckedSource, type PlanningConfig, signatureRequired } from './load-plan.js';

/**
 * The I/O before planning: verifies the signature where one is required and reads the entry point's bytes, checked,
 * so the plan (and the backend) load exactly these and never the path again. Signature failures keep their own
 * codes: tampering (signature_invalid) must not read as a policy refusal. WASM preparation (instrumenting,
 * compiling) is the backend's, at start: what it makes differs per backend (a compiled module in-process,
 * instrumented bytes for a runner).
 */
export function readSource(
  candidate: ParsedCandidate,
  mode: SandboxMode,
  config: PlanningConfig,
): CheckedSource {
  const id = candidate.id;
  const { type, entryPoint, root } = admit(candidate, mode, config);
  // Read once, verify, use those bytes: the manifest must be the verified one (bindVerified).
  const verified = signatureRequired(type, mode, config)
    ? verifyPlugin(root, config.signatures.trustedKeys, { pluginId: id, limits: config.fileLimits })
    : undefined;
  const verifiedBytes = verified === undefined ? undefined : bindVerified(candidate, verified).entryBytes;
  const bytes =
    type === 'native'
      ? readCheckedLibrary(entryPoint, id, config.fileLimits.maxFileBytes, verifiedBytes)
      : (verifiedBytes ??
        readModule(entryPoint, config.wasm.maxModuleBytes, { pluginId: id, file: entryPoint }));
  return { bytes, signer: verified?.keyId };
}
