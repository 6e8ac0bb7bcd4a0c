import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { formatDiagnostic } from '../../diagnostics.js';
import type { PluginCandidate } from '../../discovery/candidate.js';
import type { HostConfig } from '../../host/host-config.js';
import { scanPlugins } from '../../host/scan-plugins.js';
import { MANIFEST_FILE } from '../../manifest/parse-manifest.js';
import { checkWasmFile } from '../../runtime/wasm/compile-wasm.js';
import { escapeUnprintable } from '../../safe-text.js';
import {
  type Command,
  EXIT_OK,
  EXIT_PLUGIN_ERROR,
  HOST_OPTION_HELP,
  HOST_OPTIONS,
  hostConfigFrom,
  toJson,
  UsageError,
} from '../command.js';
import { candidateJson, statusText } from '../output.js';

export const validateCommand: Command = {
  name: 'validate',
  usage: '[PATH] [options]',
  summary:
    'check plugins and print every error and warning with its code (PATH: a plugin directory, its plugin.toml, or a directory of plugins)',
  options: HOST_OPTIONS,
  optionHelp: HOST_OPTION_HELP,
  maxPositionals: 1,
  async run({ values, positionals, io }) {
    const config = hostConfigFrom(values, io);
    const target = positionals[0];
    const only = target === undefined ? undefined : searchTargetFirst(target, io.cwd, config);
    const scan = scanPlugins(config);
    const asked =
      target === undefined
        ? scan.candidates
        : scan.candidates.filter((c) =>
            only !== undefined ? c.inventory?.root === only : c.searchPathIndex === 0,
          );
    if (target !== undefined && asked.length === 0) {
      io.stderr(`error plugin_not_found: no plugin found at ${target}\n`);
      return EXIT_PLUGIN_ERROR;
    }
    checkWasmModules(asked, config);
    const failed =
      asked.some((c) => c.status === 'invalid') || scan.diagnostics.some((d) => d.severity === 'error');
    if (values.json === true) {
      io.stdout(
        `${toJson({ valid: !failed, diagnostics: scan.diagnostics, plugins: asked.map(candidateJson) })}\n`,
      );
      return failed ? EXIT_PLUGIN_ERROR : EXIT_OK;
    }
    for (const d of scan.diagnostics) io.stdout(`${formatDiagnostic(d)}\n`);
    for (const c of asked) {
      io.stdout(`${escapeUnprintable(c.id ?? c.manifestPath)}: ${statusText(c)}\n`);
      for (const d of c.diagnostics) io.stdout(`  ${formatDiagnostic(d)}\n`);
    }
    const invalid = asked.filter((c) => c.status === 'invalid').length;
    io.stdout(`\n${asked.length} plugin(s) checked, ${invalid} invalid\n`);
    return failed ? EXIT_PLUGIN_ERROR : EXIT_OK;
  },
};

/**
 * Puts the plugin (or directory of plugins) asked about first among the search paths, so it wins over other
 * copies of its id and is validated in the context of every other plugin the host would see. Returns the real path
 * of the one plugin directory asked about, if `target` is one.
 */
function searchTargetFirst(target: string, cwd: string, config: HostConfig): string | undefined {
  const abs = resolve(cwd, target);
  if (!existsSync(abs)) throw new UsageError(`${target}: no such file or directory`);
  const dir = statSync(abs).isDirectory() ? abs : dirname(abs);
  if (!statSync(abs).isDirectory() && basename(abs) !== MANIFEST_FILE) {
    throw new UsageError(`${target}: expected a plugin directory or its ${MANIFEST_FILE}`);
  }
  config.searchPaths = [dir, ...config.searchPaths];
  return existsSync(join(dir, MANIFEST_FILE)) ? realpathSync(dir) : undefined;
}

/** The module's size and shape against [wasm]'s limits, as loading checks them first (docs/ABI-wasm.md). */
function checkWasmModules(asked: readonly PluginCandidate[], config: HostConfig): void {
  for (const c of asked) {
    if (c.status === 'invalid' || c.pluginType !== 'wasm' || c.entryPoint === undefined || c.id === undefined)
      continue;
    const error = checkWasmFile(c.entryPoint, {
      pluginId: c.id,
      maxModuleBytes: config.wasm.maxModuleBytes,
      limits: config.wasm.limits,
    });
    if (error === undefined) continue;
    c.diagnostics.push({
      code: error.code,
      severity: 'error',
      message: error.message,
      pluginId: c.id,
      file: c.entryPoint,
    });
    c.status = 'invalid';
  }
}
