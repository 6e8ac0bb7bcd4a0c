import { join } from 'node:path';
import type { Diagnostic } from '../../diagnostics.js';
import type { FileLimits, PluginFile, PluginInventory } from '../../discovery/plugin-inventory.js';
import type { ValidationRule } from '../rule.js';

type Finding = Pick<Diagnostic, 'code' | 'severity' | 'message'>;

/**
 * The plugin's files: nothing may leave the plugin directory (symlinks; the entry point is checked in discovery),
 * nothing may be writable by everyone, no device/FIFO/socket, and sizes and counts stay within the file limits.
 */
export const securityRule: ValidationRule = {
  name: 'SecurityRule',
  validate(candidate, context, report) {
    const inventory = candidate.inventory;
    if (inventory === undefined) return;
    const at = (path?: string) => ({
      pluginId: candidate.id,
      file: path === undefined ? candidate.pluginDir : join(candidate.pluginDir, path),
    });

    if ((inventory.rootMode & 0o002) !== 0) {
      report({
        code: 'world_writable',
        severity: 'error',
        message: `plugin directory ${candidate.pluginDir} is world-writable: anyone could change the plugin (chmod o-w)`,
        ...at(),
      });
    }
    for (const f of inventory.files) {
      for (const finding of fileFindings(f, context.fileLimits)) report({ ...finding, ...at(f.path) });
    }
    for (const finding of directoryFindings(inventory, context.fileLimits)) report({ ...finding, ...at() });
  },
};

/** What is wrong with one entry of the plugin directory. */
function fileFindings(f: PluginFile, limits: FileLimits): Finding[] {
  switch (f.kind) {
    case 'symlink':
      // A link's own mode bits mean nothing on Linux: only where it points is checked.
      if (f.linkInside !== true) {
        const message = `${f.path} is a symlink to ${f.linkTarget ?? '?'}, outside the plugin directory`;
        return [{ code: 'symlink_escape', severity: 'error', message }];
      }
      if (f.dangling === true) {
        const message = `${f.path} is a symlink to ${f.linkTarget ?? '?'}, which does not exist`;
        return [{ code: 'symlink_dangling', severity: 'warning', message }];
      }
      return [];
    case 'special':
      return [
        {
          code: 'special_file',
          severity: 'error',
          message: `${f.path} is a device, FIFO or socket; a plugin directory may only hold files, directories and links inside it`,
        },
        ...worldWritable(f),
      ];
    case 'file': {
      if (f.size <= limits.maxFileBytes) return worldWritable(f);
      const message = `${f.path} is ${f.size} bytes, above the cap of ${limits.maxFileBytes} bytes`;
      return [{ code: 'file_too_large', severity: 'error', message }, ...worldWritable(f)];
    }
    case 'directory':
      return worldWritable(f);
  }
}

function worldWritable(f: PluginFile): Finding[] {
  if ((f.mode & 0o002) === 0) return [];
  const message = `${f.path} is world-writable: anyone could change the plugin (chmod o-w)`;
  return [{ code: 'world_writable', severity: 'error', message }];
}

/** The plugin directory as a whole: total size, entry count, depth. */
function directoryFindings(inventory: PluginInventory, limits: FileLimits): Finding[] {
  const out: Finding[] = [];
  if (inventory.totalBytes > limits.maxPluginBytes) {
    out.push({
      code: 'plugin_too_large',
      severity: 'error',
      message: `the plugin's files add up to ${inventory.totalBytes} bytes, above the cap of ${limits.maxPluginBytes} bytes`,
    });
  }
  if (inventory.stoppedAt === 'too_many_files') {
    out.push({
      code: 'too_many_files',
      severity: 'error',
      message: `the plugin directory holds more than ${limits.maxFiles} entries`,
    });
  } else if (inventory.stoppedAt === 'too_deep') {
    out.push({
      code: 'too_deep',
      severity: 'error',
      message: `the plugin directory nests deeper than ${limits.maxDepth} levels`,
    });
  }
  return out;
}
