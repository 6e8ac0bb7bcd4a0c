import { join } from 'node:path';
import type { ValidationRule } from '../rule.js';

/**
 * The plugin's files: nothing may leave the plugin directory (symlinks; the entry point is checked in discovery),
 * nothing may be writable by everyone, no device/FIFO/socket, and sizes and counts stay within the file limits.
 */
export const securityRule: ValidationRule = {
  name: 'SecurityRule',
  validate(candidate, context, report) {
    const inventory = candidate.inventory;
    if (inventory === undefined) return;
    const limits = context.fileLimits;
    const base = { pluginId: candidate.id };
    const fileAt = (path: string) => ({ ...base, file: join(candidate.pluginDir, path) });

    if ((inventory.rootMode & 0o002) !== 0) {
      report({
        code: 'world_writable',
        severity: 'error',
        message: `plugin directory ${candidate.pluginDir} is world-writable: anyone could change the plugin (chmod o-w)`,
        ...base,
        file: candidate.pluginDir,
      });
    }
    for (const f of inventory.files) {
      switch (f.kind) {
        case 'symlink':
          if (f.linkInside !== true) {
            report({
              code: 'symlink_escape',
              severity: 'error',
              message: `${f.path} is a symlink to ${f.linkTarget ?? '?'}, outside the plugin directory`,
              ...fileAt(f.path),
            });
          } else if (f.dangling === true) {
            report({
              code: 'symlink_dangling',
              severity: 'warning',
              message: `${f.path} is a symlink to ${f.linkTarget ?? '?'}, which does not exist`,
              ...fileAt(f.path),
            });
          }
          continue; // a link's own mode bits mean nothing on Linux
        case 'special':
          report({
            code: 'special_file',
            severity: 'error',
            message: `${f.path} is a device, FIFO or socket; a plugin directory may only hold files, directories and links inside it`,
            ...fileAt(f.path),
          });
          break;
        case 'file':
          if (f.size > limits.maxFileBytes) {
            report({
              code: 'file_too_large',
              severity: 'error',
              message: `${f.path} is ${f.size} bytes, above the cap of ${limits.maxFileBytes} bytes`,
              ...fileAt(f.path),
            });
          }
          break;
        case 'directory':
          break;
      }
      if ((f.mode & 0o002) !== 0) {
        report({
          code: 'world_writable',
          severity: 'error',
          message: `${f.path} is world-writable: anyone could change the plugin (chmod o-w)`,
          ...fileAt(f.path),
        });
      }
    }
    if (inventory.totalBytes > limits.maxPluginBytes) {
      report({
        code: 'plugin_too_large',
        severity: 'error',
        message: `the plugin's files add up to ${inventory.totalBytes} bytes, above the cap of ${limits.maxPluginBytes} bytes`,
        ...base,
        file: candidate.pluginDir,
      });
    }
    if (inventory.stoppedAt === 'too_many_files') {
      report({
        code: 'too_many_files',
        severity: 'error',
        message: `the plugin directory holds more than ${limits.maxFiles} entries`,
        ...base,
        file: candidate.pluginDir,
      });
    } else if (inventory.stoppedAt === 'too_deep') {
      report({
        code: 'too_deep',
        severity: 'error',
        message: `the plugin directory nests deeper than ${limits.maxDepth} levels`,
        ...base,
        file: candidate.pluginDir,
      });
    }
  },
};
