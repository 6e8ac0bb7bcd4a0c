import { formatDiagnostic } from '../../diagnostics.js';
import { scanPlugins } from '../../host/scan-plugins.js';
import {
  type Command,
  EXIT_OK,
  EXIT_PLUGIN_ERROR,
  HOST_OPTION_HELP,
  HOST_OPTIONS,
  hostConfigFrom,
  toJson,
} from '../command.js';
import { candidateJson, searchPathJson, statusText, table } from '../output.js';

export const discoverCommand: Command = {
  name: 'discover',
  usage: '[options]',
  summary: 'list every plugin found in the search paths, valid or not',
  options: HOST_OPTIONS,
  optionHelp: HOST_OPTION_HELP,
  maxPositionals: 0,
  async run({ values, io }) {
    const config = hostConfigFrom(values, io);
    const scan = scanPlugins(config);
    const failed =
      scan.candidates.some((c) => c.status === 'invalid') ||
      scan.diagnostics.some((d) => d.severity === 'error');
    if (values.json === true) {
      io.stdout(
        `${toJson({
          searchPaths: scan.searchPaths.map(searchPathJson),
          diagnostics: scan.diagnostics,
          plugins: scan.candidates.map(candidateJson),
          loadOrder: scan.order.load.map((c) => c.id),
        })}\n`,
      );
    } else {
      const rows = scan.candidates.map((c) => [
        c.id ?? '-',
        c.manifest?.metadata.name ?? '-',
        c.manifest?.metadata.version ?? '-',
        c.pluginType ?? '-',
        c.pluginDir,
        statusText(c),
      ]);
      io.stdout(`${table(['ID', 'NAME', 'VERSION', 'TYPE', 'PATH', 'STATUS'], rows)}\n`);
      for (const d of scan.diagnostics) io.stdout(`${formatDiagnostic(d)}\n`);
      const searched = scan.searchPaths.filter((s) => s.status === 'searched').length;
      io.stdout(
        `\n${scan.candidates.length} plugin(s) in ${searched} search path(s); run \`reed-plugins validate\` for details\n`,
      );
    }
    return failed ? EXIT_PLUGIN_ERROR : EXIT_OK;
  },
};
