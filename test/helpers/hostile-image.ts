import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import pino from 'pino';
import tar from 'tar-fs';
import { ensureRunnerImage } from '../../src/backends/container/images.js';
import { REPO } from './cli.js';
import { tempDir } from './plugin-tree.js';

/** Where test/fixtures/runners lands in the image; run one as [NODE_IN_IMAGE, `${RUNNERS_IN_IMAGE}/x.mjs`]. */
export const RUNNERS_IN_IMAGE = '/opt/reed/test/fixtures/runners';
export const NODE_IN_IMAGE = '/usr/local/bin/node';

/**
 * The runner image plus the hostile runners of test/fixtures/runners (their imports resolve to the runner image's
 * dist/), tagged `tag`: a test file passes its own tag, so files building at once never take each other's.
 */
export async function hostileRunnerImage(docker: Docker, tag: string): Promise<string> {
  const runner = await ensureRunnerImage({ docker, logger: pino({ level: 'silent' }) });
  const context = tempDir();
  cpSync(join(REPO, 'test/fixtures/runners'), join(context, 'runners'), { recursive: true });
  writeFileSync(join(context, 'Dockerfile'), `FROM ${runner}\nCOPY runners/ ${RUNNERS_IN_IMAGE}/\n`);
  const stream = await docker.buildImage(tar.pack(context) as unknown as NodeJS.ReadableStream, { t: tag });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (error: Error | null, events: { error?: string }[]) => {
      const failed = events?.find((e) => e.error !== undefined);
      if (error !== null || failed !== undefined) reject(error ?? new Error(failed?.error));
      else resolve();
    }),
  );
  return tag;
}
