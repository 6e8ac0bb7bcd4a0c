import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Logger } from 'pino';
import tar from 'tar-fs';
import { ReedError } from '../../errors.js';
import { publishImageBuilt } from '../../events/events.js';
import { MARK_PATTERN, markOwnerGone, ownMark } from '../../process-identity.js';
import { collectNodeRuntime } from '../shared/node-runtime.js';
import { PACKAGE_ROOT } from '../shared/runner-program.js';
import { type Dockerode, engineClientOf } from './dockerode-client.js';
import { type EngineClient, engineError } from './engine-client.js';
import { LABEL_IMAGE_HASH, LABEL_MANAGED } from './labels.js';

const IMAGES_DIR = join(PACKAGE_ROOT, 'images');
/** Bump when the image layout changes: part of every image hash. */
const IMAGE_LAYOUT_VERSION = '2';

export interface ImageOptions {
  /** The engine the images are built in (a dockerode client is wrapped in one). */
  docker: Dockerode | EngineClient;
  logger: Logger;
  /** A normal base image where a registry is reachable; default: built FROM scratch. */
  baseImage?: string;
}

/** One build per tag at a time in this process; a failed build rejects and is not remembered. */
const building = new Map<string, Promise<string>>();

/** The two images every plugin image builds on: the Node base and the runner (see images/). */
export interface RunnerImages {
  base: string;
  runner: string;
}

/**
 * The base and runner images, each tagged by a content hash of everything that goes in; built only when no image
 * with that tag exists. Returns their tags.
 */
export function ensureRunnerImages(options: ImageOptions): Promise<RunnerImages> {
  const engine = engineClientOf(options.docker);
  // The inputs (this Node, this package's built code) do not change while the process runs: hash them once per
  // engine (each engine has images of its own).
  const key = `${engine.address}\0${options.baseImage ?? ''}`;
  let images = runnerImages.get(key);
  if (images === undefined) {
    images = buildRunnerImages({ ...options, docker: engine });
    runnerImages.set(key, images);
    images.catch(() => runnerImages.delete(key));
  }
  return images;
}

/** The runner image's tag (see ensureRunnerImages). */
export async function ensureRunnerImage(options: ImageOptions): Promise<string> {
  return (await ensureRunnerImages(options)).runner;
}

const runnerImages = new Map<string, Promise<RunnerImages>>();

/** ImageOptions with the engine client made. */
interface EngineImageOptions extends ImageOptions {
  docker: EngineClient;
}

async function buildRunnerImages(options: EngineImageOptions): Promise<RunnerImages> {
  const base = await ensureImage(
    options,
    'reed-base',
    'Dockerfile.base',
    (ctx) => collectNodeRuntime(join(ctx, 'rootfs')),
    {
      ...(options.baseImage === undefined ? {} : { BASE: options.baseImage }),
    },
  );
  const runner = await ensureImage(
    options,
    'reed-runner',
    'Dockerfile.runner',
    (ctx) => collectRunnerApp(join(ctx, 'app')),
    { BASE_IMAGE: base },
  );
  return { base, runner };
}

/** The plugin's files on the runner image. */
export async function ensurePluginImage(
  options: ImageOptions,
  runnerImage: string,
  pluginDir: string,
  pluginId: string,
): Promise<string> {
  return ensureImage(
    { ...options, docker: engineClientOf(options.docker) },
    `reed-plugin-${pluginId.replace(/[^a-z0-9._-]/g, '-')}`,
    'Dockerfile.plugin',
    // A plugin's own links (discovery accepts those that stay in its directory) are copied as they are: cpSync
    // otherwise makes a relative link absolute, into the host's plugin directory, which the image cannot reach.
    (ctx) =>
      cpSync(pluginDir, join(ctx, 'plugin'), { recursive: true, dereference: false, verbatimSymlinks: true }),
    {
      RUNNER_IMAGE: runnerImage,
    },
  );
}

/**
 * A build's context directory: `reed-image-<the host's mark>-XXXXXX` in the temporary directory (the mark:
 * src/process-identity.ts). A host killed during a build (SIGKILL: no clean-up of its own runs) leaves its context
 * there, up to the size of a plugin's files or of the Node runtime; the first build of a later host removes those
 * of processes of its pid namespace that no longer exist (a host in a container sharing /tmp has pids of its own).
 */
const CONTEXT_PREFIX = 'reed-image-';
const STALE_CONTEXT_RE = new RegExp(`^reed-image-${MARK_PATTERN}-[A-Za-z0-9]{6}$`);
let contextsSwept = false;

function makeContextDir(): string {
  if (!contextsSwept) {
    contextsSwept = true;
    removeStaleContexts(tmpdir());
  }
  return mkdtempSync(join(tmpdir(), `${CONTEXT_PREFIX}${ownMark()}-`));
}

/**
 * Removes the build contexts in `dir` left by dead processes: only directories (not links) of this process's user
 * whose name carries the mark of a process of this pid namespace that is gone. Another live host's (this user's, sharing the directory)
 * are its builds in progress and are left. Exported for tests.
 */
export function removeStaleContexts(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = STALE_CONTEXT_RE.exec(name);
    if (m === null || !markOwnerGone(m[1] as string, Number(m[2]), m[3] as string)) continue;
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      // rm does not follow links inside it (lstat all the way down): a link placed in a context is removed, not
      // its target.
      rmSync(path, { recursive: true, force: true });
      removed.push(name);
    } catch {
      // gone meanwhile, or not ours to remove: left
    }
  }
  return removed;
}

async function ensureImage(
  options: EngineImageOptions,
  name: string,
  dockerfile: string,
  fill: (contextDir: string) => void,
  buildargs: Record<string, string>,
): Promise<string> {
  const context = makeContextDir();
  try {
    cpSync(join(IMAGES_DIR, dockerfile), join(context, 'Dockerfile'));
    fill(context);
    const hash = hashTree(context, JSON.stringify({ buildargs, IMAGE_LAYOUT_VERSION }));
    const tag = `${name}:${hash.slice(0, 32)}`;
    const pending = building.get(tag);
    if (pending !== undefined) return await pending;
    const work = (async () => {
      if (await imageExists(options.docker, tag)) return tag;
      options.logger.info({ image: tag }, 'building image');
      const started = performance.now();
      const kind = name === 'reed-base' || name === 'reed-runner' ? 'runner' : 'plugin';
      try {
        await build(options, context, tag, hash, buildargs);
      } catch (error) {
        const code = error instanceof ReedError ? error.code : 'internal_error';
        publishImageBuilt({ kind, image: tag, durationMs: performance.now() - started, code });
        throw error;
      }
      publishImageBuilt({ kind, image: tag, durationMs: performance.now() - started, code: 'ok' });
      return tag;
    })();
    building.set(tag, work);
    try {
      return await work;
    } finally {
      building.delete(tag);
    }
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

async function imageExists(engine: EngineClient, tag: string): Promise<boolean> {
  try {
    return await engine.imageExists(tag);
  } catch (error) {
    throw engineError(error, `cannot inspect image ${tag}`);
  }
}

/** Builds, following the stream; the first `error` in it rejects (the stream ending is not success). */
async function build(
  options: EngineImageOptions,
  context: string,
  tag: string,
  hash: string,
  buildargs: Record<string, string>,
): Promise<void> {
  let progress: NodeJS.ReadableStream;
  try {
    // tar-fs applies the process umask when packing unless told not to; modes must arrive as they are
    // (the image's /tmp is 1777, see collectNodeRuntime).
    // (`umask` is a tar-fs 3 option its type definitions do not know yet.)
    const packed = tar.pack(context, { umask: 0 } as Parameters<typeof tar.pack>[1]);
    progress = await options.docker.buildImage(packed as unknown as NodeJS.ReadableStream, {
      tag,
      buildargs,
      labels: { [LABEL_MANAGED]: 'true', [LABEL_IMAGE_HASH]: hash },
    });
  } catch (error) {
    throw engineError(error, `cannot build image ${tag}`);
  }
  let failure: string | undefined;
  try {
    await options.docker.followBuild(progress, (event) => {
      if (event.error !== undefined || event.errorDetail !== undefined)
        failure ??= event.errorDetail?.message ?? event.error;
      const line = event.stream?.trim();
      // Each build step is progress worth showing (the CLI logs info to stderr); the rest is detail.
      if (line?.startsWith('Step ')) options.logger.info({ image: tag }, line);
      else if (line) options.logger.debug({ image: tag }, line);
    });
  } catch (error) {
    throw engineError(error, `building image ${tag} failed`);
  }
  if (failure !== undefined)
    throw new ReedError('image_build_failed', `building image ${tag} failed: ${failure}`);
}

/**
 * package.json, the runner's bundle (dist/runner/), the compiled library code (hostile test runners import its
 * protocol), and the runner's dependencies (koffi and its binary, semver).
 */
function collectRunnerApp(app: string): void {
  mkdirSync(app, { recursive: true });
  cpSync(join(PACKAGE_ROOT, 'package.json'), join(app, 'package.json'));
  for (const part of ['dist/src', 'dist/runner'])
    cpSync(join(PACKAGE_ROOT, part), join(app, part), {
      recursive: true,
      filter: (src) => !src.endsWith('.map'),
      // The runner's code cache names runner.js's size and mtime (scripts/bundle.mjs): the image keeps the mtime
      // (to the second), so its main.js finds the cache made for its runner.js.
      preserveTimestamps: true,
    });
  const modules = [
    'koffi',
    'semver',
    ...readdirSafe(join(PACKAGE_ROOT, 'node_modules/@koromix')).map((n) => `@koromix/${n}`),
  ];
  for (const m of modules)
    cpSync(join(PACKAGE_ROOT, 'node_modules', m), join(app, 'node_modules', m), { recursive: true });
}

function readdirSafe(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

/**
 * The runner's V8 code caches in the runner image's context (scripts/bundle.mjs): made from runner.js and the V8
 * flags, both hashed, but not the same bytes from one build to the next. Hashed, they would make every build's
 * runner image (and every plugin image on it) new; an image kept from a build of the same runner.js holds that
 * build's cache, which fits it (main.js checks its runner.js's size and mtime, and V8 the source and flags).
 */
const RUNNER_CODE_CACHE = /^app\/dist\/runner\/runner\.js\.heap-[0-9a-z]+\.cache$/;

/**
 * SHA-256 over every entry's relative path, mode and content, in sorted order, plus `salt` (not RUNNER_CODE_CACHE).
 * A link's content is its target's text: a context holds a plugin's files, and the walk never goes through a link it
 * placed (one to a large file hashed it once per link, one to `.` walked down until ELOOP; test/security/
 * plugin-image-links).
 */
export function hashTree(root: string, salt: string): string {
  const hash = createHash('sha256').update(salt);
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      if (RUNNER_CODE_CACHE.test(relative(root, abs))) continue;
      const st = lstatSync(abs);
      hash.update(`${relative(root, abs)}\0${st.mode}\0`);
      if (st.isDirectory()) walk(abs);
      else if (st.isSymbolicLink()) hash.update(readlinkSync(abs));
      else if (st.isFile()) hash.update(readFileSync(abs)); // never a FIFO's read, which would wait for a writer
    }
  };
  walk(root);
  return hash.digest('hex');
}
