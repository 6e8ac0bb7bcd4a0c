import { createHash } from 'node:crypto';
import { relative, sep } from 'node:path';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import type { VerifiedPlugin } from './signature.js';

/**
 * Ties a verified plugin to what discovery found (issue 10, class 12): the manifest the host runs with (parsed and
 * validated at the scan) must have been parsed from bytes equal to the verified ones, and the entry point is
 * loaded from the verified bytes. Anything else means the directory changed between the scan and the load, and
 * nothing of it is used: `signature_invalid`.
 */
export function bindVerified(
  candidate: ParsedCandidate,
  verified: VerifiedPlugin,
): { entryBytes: Uint8Array } {
  const id = candidate.id;
  const at = { pluginId: id, file: candidate.manifestPath };
  const source = candidate.manifestSource;
  const manifestBytes = source === undefined ? undefined : verified.contents.get(source.path);
  if (
    source === undefined ||
    manifestBytes === undefined ||
    createHash('sha256').update(manifestBytes).digest('hex') !== source.sha256
  ) {
    throw new ReedError(
      'signature_invalid',
      `the manifest of plugin "${id}" changed after it was discovered and validated: the signed plugin.toml is not the one the host checked, so neither is used. Restart the host (a fresh scan) once the plugin directory is stable`,
      at,
    );
  }
  const root = candidate.inventory?.root;
  const entry = candidate.entryPoint;
  const entryBytes =
    root === undefined || entry === undefined
      ? undefined
      : verified.contents.get(relative(root, entry).split(sep).join('/'));
  if (entryBytes === undefined) {
    throw new ReedError(
      'signature_invalid',
      `the entry point of plugin "${id}" is not among its verified files (it changed after discovery): nothing of it is loaded`,
      { ...at, ...(entry === undefined ? {} : { file: entry }) },
    );
  }
  return { entryBytes };
}
