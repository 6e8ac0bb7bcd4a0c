import { extname, isAbsolute, join, posix } from 'node:path';
import type { Diagnostic } from '../diagnostics.js';
import type { PluginManifest, PluginType } from '../manifest/types.js';
import { printable } from '../schema-check.js';
import type { PluginFile, PluginInventory } from './plugin-inventory.js';

/**
 * The library file names accepted for a native plugin on this platform, in order of preference.
 * The seed's discovery looked for `plugin.so` while its loader opened `libplugin.so`; we accept both and
 * prefer `plugin.<ext>` (docs/ARCHITECTURE.md, "Native library name").
 */
export function nativeLibraryNames(platform: NodeJS.Platform = process.platform): string[] {
  switch (platform) {
    case 'darwin':
      return ['plugin.dylib', 'libplugin.dylib'];
    case 'win32':
      return ['plugin.dll'];
    default:
      return ['plugin.so', 'libplugin.so'];
  }
}

export const WASM_FILE = 'plugin.wasm';
const NATIVE_EXTENSIONS = new Set(['.so', '.dylib', '.dll']);

export interface EntryPointResult {
  pluginType?: PluginType;
  /** Real path of the entry file. */
  entryPoint?: string;
  diagnostics: Diagnostic[];
}

/** What the steps of {@link resolveEntryPoint} share: the plugin's files by path, and where findings point. */
interface Lookup {
  inventory: PluginInventory;
  byPath: Map<string, PluginFile>;
  exists: (path: string) => boolean;
  at: { file: string; pluginId: string };
  diagnostics: Diagnostic[];
}

/** Decides the plugin type (manifest first, then the files present) and locates the entry file. */
export function resolveEntryPoint(
  manifest: PluginManifest,
  inventory: PluginInventory,
  manifestPath: string,
): EntryPointResult {
  const diagnostics: Diagnostic[] = [];
  const at = { file: manifestPath, pluginId: manifest.metadata.id };
  const byPath = new Map<string, PluginFile>(inventory.files.map((f) => [f.path, f]));
  const exists = (p: string) => byPath.get(p)?.kind === 'file' || byPath.get(p)?.kind === 'symlink';
  const lookup: Lookup = { inventory, byPath, exists, at, diagnostics };

  let declared: string | undefined;
  if (manifest.entryPoint !== undefined) {
    declared = insidePath(manifest.entryPoint);
    if (declared === undefined) {
      diagnostics.push({
        code: 'path_traversal',
        severity: 'error',
        message: `entry_point "${printable(manifest.entryPoint)}" leaves the plugin directory: give a path relative to it, without ".."`,
        field: 'entry_point',
        ...at,
      });
      return { diagnostics };
    }
  }
  const pluginType = manifest.pluginType ?? typeFromExtension(declared) ?? typeFromFiles(lookup);
  if (pluginType === undefined) return { diagnostics };
  return locateEntry(pluginType, declared, lookup);
}

/** `entry_point` normalised and relative to the plugin directory, or undefined when it would leave it. */
function insidePath(declared: string): string | undefined {
  const normalized = posix.normalize(declared.replaceAll('\\', '/'));
  if (
    isAbsolute(declared) ||
    /^[A-Za-z]:/.test(declared) ||
    normalized === '..' ||
    normalized.startsWith('../') ||
    declared.includes('\0')
  ) {
    return undefined;
  }
  return normalized.replace(/^\.\//, '');
}

function typeFromExtension(declared: string | undefined): PluginType | undefined {
  if (declared === undefined) return undefined;
  const ext = extname(declared);
  if (ext === '.wasm') return 'wasm';
  if (NATIVE_EXTENSIONS.has(ext)) return 'native';
  return undefined;
}

/** The type the files present show; undefined, with an error, when they show both or neither. */
function typeFromFiles({ exists, at, diagnostics }: Lookup): PluginType | undefined {
  const hasWasm = exists(WASM_FILE);
  const hasNative = nativeLibraryNames().some(exists);
  if (hasWasm && hasNative) {
    diagnostics.push({
      code: 'plugin_type_ambiguous',
      severity: 'error',
      message: `the plugin directory holds both ${WASM_FILE} and a native library: set plugin_type to "wasm" or "native"`,
      field: 'plugin_type',
      ...at,
    });
    return undefined;
  }
  if (hasWasm) return 'wasm';
  if (hasNative) return 'native';
  diagnostics.push({
    code: 'plugin_type_undetected',
    severity: 'error',
    message: `cannot tell the plugin type: set plugin_type, or add ${WASM_FILE} or ${nativeLibraryNames().join(' / ')}`,
    field: 'plugin_type',
    ...at,
  });
  return undefined;
}

/** The entry file's real path: the declared one, else the type's default; a link must stay inside. */
function locateEntry(pluginType: PluginType, declared: string | undefined, lookup: Lookup): EntryPointResult {
  const { inventory, byPath, exists, at, diagnostics } = lookup;
  const relPath =
    declared ??
    (pluginType === 'wasm' ? WASM_FILE : (nativeLibraryNames().find(exists) ?? nativeLibraryNames()[0]));
  const field = declared === undefined ? 'plugin_type' : 'entry_point';
  const entry = relPath === undefined ? undefined : byPath.get(relPath);
  const refuse = (code: Diagnostic['code'], message: string): EntryPointResult => {
    diagnostics.push({ code, severity: 'error', message, field, ...at });
    return { pluginType, diagnostics };
  };
  if (relPath === undefined || entry === undefined) {
    return refuse(
      'entry_point_missing',
      `entry point "${printable(relPath ?? '')}" does not exist in the plugin directory`,
    );
  }
  const notFile = (path: string) =>
    refuse('entry_point_not_file', `entry point "${path}" is not a regular file`);
  if (entry.kind === 'symlink') {
    if (entry.linkInside !== true) {
      return refuse(
        'path_traversal',
        `entry point "${entry.path}" is a symlink that leaves the plugin directory`,
      );
    }
    if (entry.dangling === true) {
      return refuse(
        'entry_point_missing',
        `entry point "${entry.path}" is a symlink to a file that does not exist`,
      );
    }
    const target = entry.linkTarget ?? '';
    const targetEntry = byPath.get(
      target
        .slice(inventory.root.length + 1)
        .split('\\')
        .join('/'),
    );
    if (targetEntry?.kind !== 'file') return notFile(entry.path);
    return { pluginType, entryPoint: target, diagnostics };
  }
  if (entry.kind !== 'file') return notFile(entry.path);
  return { pluginType, entryPoint: join(inventory.root, entry.path), diagnostics };
}
