import pino from 'pino';
import { defaultEngineClient } from '../../backends/container/dockerode-client.js';
import { ensureRunnerImages } from '../../backends/container/images.js';
import { type Command, EXIT_OK, toJson } from '../command.js';
import { table } from '../output.js';

export const imagesCommand: Command = {
  name: 'images',
  usage: '[--base-image IMAGE] [--json]',
  summary: 'build (when missing) the base and runner images container mode needs, and print their tags',
  options: { 'base-image': { type: 'string' }, json: { type: 'boolean' } },
  optionHelp: [
    [
      '--base-image IMAGE',
      'lay the Node runtime over IMAGE (where a registry is reachable) instead of scratch',
    ],
    ['--json', 'print machine-readable JSON'],
  ],
  maxPositionals: 0,
  async run({ values, io }) {
    const logger = pino(
      { name: 'reed-plugins', level: io.env.REED_LOG_LEVEL ?? 'info' },
      pino.destination(2),
    );
    const baseImage = values['base-image'];
    const images = await ensureRunnerImages({
      // Builds take minutes: the engine client's per-request timeout is long here.
      docker: defaultEngineClient(300_000),
      logger,
      ...(typeof baseImage === 'string' ? { baseImage } : {}),
    });
    if (values.json === true) io.stdout(`${toJson(images)}\n`);
    else
      io.stdout(
        `${table(
          ['IMAGE', 'TAG'],
          [
            ['base', images.base],
            ['runner', images.runner],
          ],
        )}\n`,
      );
    return EXIT_OK;
  },
};
