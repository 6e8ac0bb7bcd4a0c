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

  let declared = manifest.entryPoint;
  if (declared !== undefined) {
    const normalized = posix.normalize(declared.replaceAll('\\', '/'));
    if (
      isAbsolute(declared) ||
      /^[A-Za-z]:/.test(declared) ||
      normalized === '..' ||
      normalized.startsWith('../') ||
      declared.includes('\0')
    ) {
      diagnostics.push({
        code: 'path_traversal',
        severity: 'error',
        message: `entry_point "${printable(declared)}" leaves the plugin directory: give a path relative to it, without ".."`,
        field: 'entry_point',
        ...at,
      });
      return { diagnostics };
    }
    declared = normalized.replace(/^\.\//, '');
  }

  let pluginType = manifest.pluginType;
  if (pluginType === undefined) {
    if (declared !== undefined) {
      const ext = extname(declared);
      if (ext === '.wasm') pluginType = 'wasm';
      else if (NATIVE_EXTENSIONS.has(ext)) pluginType = 'native';
    }
    if (pluginType === undefined) {
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
        return { diagnostics };
      }
      if (hasWasm) pluginType = 'wasm';
      else if (hasNative) pluginType = 'native';
      else {
        diagnostics.push({
          code: 'plugin_type_undetected',
          severity: 'error',
          message: `cannot tell the plugin type: set plugin_type, or add ${WASM_FILE} or ${nativeLibraryNames().join(' / ')}`,
          field: 'plugin_type',
          ...at,
        });
        return { diagnostics };
      }
    }
  }

  const relPath =
    declared ??
    (pluginType === 'wasm' ? WASM_FILE : (nativeLibraryNames().find(exists) ?? nativeLibraryNames()[0]));
  const field = declared === undefined ? 'plugin_type' : 'entry_point';
  const entry = relPath === undefined ? undefined : byPath.get(relPath);
  if (relPath === undefined || entry === undefined) {
    diagnostics.push({
      code: 'entry_point_missing',
      severity: 'error',
      message: `entry point "${printable(relPath ?? '')}" does not exist in the plugin directory`,
      field,
      ...at,
    });
    return { pluginType, diagnostics };
  }
  if (entry.kind === 'symlink') {
    if (entry.linkInside !== true) {
      diagnostics.push({
        code: 'path_traversal',
        severity: 'error',
        message: `entry point "${entry.path}" is a symlink that leaves the plugin directory`,
        field,
        ...at,
      });
      return { pluginType, diagnostics };
    }
    if (entry.dangling === true) {
      diagnostics.push({
        code: 'entry_point_missing',
        severity: 'error',
        message: `entry point "${entry.path}" is a symlink to a file that does not exist`,
        field,
        ...at,
      });
      return { pluginType, diagnostics };
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

  function notFile(path: string): EntryPointResult {
    diagnostics.push({
      code: 'entry_point_not_file',
      severity: 'error',
      message: `entry point "${path}" is not a regular file`,
      field,
      ...at,
    });
    return { ...(pluginType === undefined ? {} : { pluginType }), diagnostics };
  }
}
