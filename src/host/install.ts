import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { LoadedPlugin } from '../dependencies/resolve-dependencies.js';
import type { ParsedCandidate } from '../discovery/candidate.js';
import { ReedError } from '../errors.js';
import { MANIFEST_FILE } from '../manifest/parse-manifest.js';
import { PLUGIN_ID_PATTERN } from '../manifest/schema.js';
import type { HostConfig } from './host-config.js';
import type { PluginStore } from './plugin-store.js';
import { scanPluginsOffThread } from './scan-plugins.js';
import { extractPluginTar } from './tar-intake.js';

const ID_RE = new RegExp(PLUGIN_ID_PATTERN);

/** A plugin id from outside (a URL, a command line), checked before it names anything. */
export function checkPluginId(id: string): void {
  if (!ID_RE.test(id))
    throw new ReedError(
      'install_id_mismatch',
      `"${id.slice(0, 200)}" is not a plugin id ([a-z0-9._-], 1-128 characters, starting and ending with a letter or digit)`,
    );
}

/**
 * The plugin directory found under `dir` (its `plugin.toml` at the top, or in its one subdirectory), scanned and
 * validated as the host would (in the context of `loaded`, the other plugins): the valid candidate with id `id`, or
 * a refusal: `install_archive_invalid` (no manifest), `install_id_mismatch`, or the first error's own code.
 * Discovery's walk of the directory (a lstat per file: ~55 ms for 9,900 files, and an upload may hold 10,000) runs
 * on a worker thread while the host serves (scanPluginsOffThread); the candidate is the one scanPlugins finds.
 */
export async function scanPluginDir(
  config: HostConfig,
  dir: string,
  id: string,
  loaded: LoadedPlugin[],
): Promise<ParsedCandidate> {
  const root = resolve(dir);
  const scan = await scanPluginsOffThread({ ...config, pluginDirs: [root], searchPaths: [root] }, loaded);
  const found = scan.candidates.find((c) => resolve(c.pluginDir) === root);
  if (found === undefined)
    throw new ReedError(
      'install_archive_invalid',
      `no ${MANIFEST_FILE} at the top of the plugin directory for "${id}" (nor in its one subdirectory)`,
      { pluginId: id, details: { reason: 'no_manifest' } },
    );
  const errors = found.diagnostics.filter((d) => d.severity === 'error');
  const first = errors[0];
  // A manifest too broken to name an id is refused for what is wrong with it, not as another id.
  if (found.id !== id && (found.id !== undefined || first === undefined))
    throw new ReedError(
      'install_id_mismatch',
      `the manifest's metadata.id is ${found.id === undefined ? 'missing or malformed' : `"${found.id}"`}, not "${id}"`,
      {
        pluginId: id,
        file: found.manifestPath,
        field: 'metadata.id',
        details: { manifestId: found.id ?? null },
      },
    );
  if (found.status !== 'valid' || found.manifest === undefined || first !== undefined) {
    const code = first?.code ?? 'plugin_invalid';
    throw new ReedError(
      code,
      `plugin "${id}" is not valid: ${errors.map((d) => `${d.code}: ${d.message}`).join('; ') || found.status}`,
      {
        pluginId: id,
        ...(first?.file === undefined ? {} : { file: first.file }),
        ...(first?.field === undefined ? {} : { field: first.field }),
        details: { diagnostics: errors.map((d) => ({ code: d.code, message: d.message, field: d.field })) },
      },
    );
  }
  return found as ParsedCandidate;
}

/** The plugin root inside an extracted archive: the top, or its only entry when that is a directory. */
function pluginRoot(tree: string): string {
  const names = readdirSync(tree);
  if (names.includes(MANIFEST_FILE) || names.length !== 1) return tree;
  const only = join(tree, names[0] as string);
  return statSync(only).isDirectory() ? only : tree;
}

/**
 * Takes an archive into the store: extracted into a fresh staging directory (any hostile entry refuses it all),
 * validated there (the manifest's id must be `id`), then kept as a new version directory (durably) and scanned at
 * its final place. The staging directory is removed whatever happens; a refusal leaves nothing behind.
 */
export async function stageArchive(
  store: PluginStore,
  config: HostConfig,
  id: string,
  archive: Readable,
  loaded: LoadedPlugin[],
): Promise<{ candidate: ParsedCandidate; dir: string }> {
  checkPluginId(id);
  const staging = store.stage();
  try {
    const tree = join(staging, 'tree');
    mkdirSync(tree, { mode: 0o755 });
    await extractPluginTar(archive, tree, config.fileLimits, id);
    const root = pluginRoot(tree);
    const staged = await scanPluginDir(config, root, id, loaded);
    const dir = await store.keep(root, id, staged.manifest.metadata.version);
    try {
      return { candidate: await scanPluginDir(config, dir, id, loaded), dir };
    } catch (error) {
      await store.discard(dir);
      throw error;
    }
  } finally {
    await store.removeStaging(staging);
  }
}
