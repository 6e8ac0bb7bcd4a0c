import type { Diagnostic } from '../diagnostics.js';
import type { PluginManifest, PluginType } from '../manifest/types.js';
import type { PluginInventory } from './plugin-inventory.js';

/**
 * - `valid`: no errors (warnings allowed); may be loaded.
 * - `invalid`: at least one error diagnostic; never loaded.
 * - `shadowed`: another copy of the same id has precedence; never loaded.
 */
export type CandidateStatus = 'valid' | 'invalid' | 'shadowed';

/** One plugin found during discovery, with everything learned about it so far. */
export interface PluginCandidate {
  /** Present when the manifest yielded a well-formed id, even if it is otherwise broken. */
  id?: string;
  /** The manifest as found under its search path (absolute). */
  manifestPath: string;
  /** The plugin directory as found under its search path (absolute); `inventory.root` is its real path. */
  pluginDir: string;
  /** The search path it was found under, and that path's place in the precedence order (0 wins). */
  searchPath: string;
  searchPathIndex: number;
  manifest?: PluginManifest;
  pluginType?: PluginType;
  /** The file the runtime loads (real path, inside the plugin directory). */
  entryPoint?: string;
  inventory?: PluginInventory;
  /**
   * The file the manifest was parsed from (relative to `inventory.root`; plugin.toml, or the file it links to)
   * and the SHA-256 of the bytes parsed. Where a signature is required, the host loads only when the verified
   * bytes of that file hash the same: the manifest it runs with is the manifest the signature covers.
   */
  manifestSource?: { path: string; sha256: string };
  diagnostics: Diagnostic[];
  status: CandidateStatus;
}

/** A candidate that has a parsed manifest: what the validation rules and dependency resolution work on. */
export type ParsedCandidate = PluginCandidate & { id: string; manifest: PluginManifest };

export function isParsed(candidate: PluginCandidate): candidate is ParsedCandidate {
  return candidate.manifest !== undefined && candidate.id !== undefined;
}
