import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { type Diagnostic, formatDiagnostic } from '../../diagnostics.js';
import { isParsed, type PluginCandidate } from '../../discovery/candidate.js';
import type { HostConfig } from '../../host/host-config.js';
import { scanPlugins } from '../../host/scan-plugins.js';
import { effectiveLimits } from '../../manifest/limits.js';
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
    const warnings: [PluginCandidate, Diagnostic][] = [];
    const scan = scanPlugins(config, [], (candidates) =>
      warnings.push(...checkWasmModules(candidates, config)),
    );
    // After the rules' findings: a warning does not change what validation decides.
    for (const [c, warning] of warnings) c.diagnostics.push(warning);
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

/**
 * Each WASM plugin's module, read as loading reads it and checked by the same function loading starts with
 * (checkWasmFile: size, component or module, shape, imports for the ABI it uses, memory and tables against the
 * plugin's caps, exports, start function), so that what load would refuse is an error here with the same code.
 * Runs before the validation rules, so a refused module makes the plugins that depend on it invalid too. A module
 * the host could load but whose functions it could never call is a warning, returned to be added last.
 */
function checkWasmModules(
  candidates: readonly PluginCandidate[],
  config: HostConfig,
): [PluginCandidate, Diagnostic][] {
  const warnings: [PluginCandidate, Diagnostic][] = [];
  for (const c of candidates) {
    if (!isParsed(c) || c.status === 'shadowed' || c.pluginType !== 'wasm' || c.entryPoint === undefined)
      continue;
    const limits = effectiveLimits(c.manifest.limits, config.limits);
    const { error, facts } = checkWasmFile(c.entryPoint, {
      pluginId: c.id,
      maxModuleBytes: config.wasm.maxModuleBytes,
      limits: config.wasm.limits,
      memoryMb: limits.memoryMb,
      tableElements: limits.tableElements,
      ...(c.manifest.abi === undefined ? {} : { abi: c.manifest.abi }),
    });
    const at = { pluginId: c.id, file: c.entryPoint };
    if (error !== undefined) {
      c.diagnostics.push({ code: error.code, severity: 'error', message: error.message, ...at });
      c.status = 'invalid';
    } else if (facts.callable.length === 0) {
      warnings.push([
        c,
        {
          code: 'wasm_no_callable',
          severity: 'warning',
          message: `${c.entryPoint} exports no function the host can call: a callable function is an exported () -> i32 whose name does not start with "_" and is not init or deactivate, or a WASI command's _start (docs/ABI-wasm.md)`,
          ...at,
        },
      ]);
    }
  }
  return warnings;
}
