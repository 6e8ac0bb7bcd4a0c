import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { LABEL_IMAGE_HASH, LABEL_MANAGED } from '../../src/backends/container/labels.js';
import type { PluginHost } from '../../src/host/plugin-host.js';
import { REPO } from '../helpers/cli.js';
import { startHost, text } from '../helpers/host.js';
import { tempDir } from '../helpers/plugin-tree.js';

/**
 * Issue 17, part 3: a host killed with SIGKILL during an image build (src/backends/container/images.ts). Images are
 * tagged by a hash of their whole context and looked up by that tag, so what matters is that a build cut short
 * leaves no tag: a later host finds none and builds again, or finds a whole image (the build had finished), and
 * serves from it. Each kill lands at a later point of a plugin image's build (its context made and being sent,
 * the first step, the second). What the killed host left in the temporary directory (its build context, a copy of
 * the plugin's files) is removed by the next host's first build.
 *
 * Needs `npm run build` (the killed host runs from dist/) and the Docker engine.
 */
const docker = new Docker();
const KILL_AT = ['building image', 'Step 1/', 'Step 2/'];
const hosts: PluginHost[] = [];
let imageName = '';

afterAll(async () => {
  for (const h of hosts.splice(0)) await h.close();
  if (imageName === '') return;
  for (const image of await docker.listImages({ filters: { reference: [imageName] } }))
    await docker
      .getImage(image.Id)
      .remove({ force: true })
      .catch(() => {});
}, 120_000);

/** The plugin image's tags and labels, as the engine has them now. */
async function taggedImages(): Promise<{ tags: string[]; labels: Record<string, string> }[]> {
  const images = await docker.listImages({ filters: { reference: [imageName] } });
  return images.map((i) => ({ tags: i.RepoTags ?? [], labels: i.Labels ?? {} }));
}

/**
 * Runs the host fixture until it logs `killAt` for the plugin's image, then SIGKILLs it. Resolves with its pid and
 * whether it got there (a host that printed `ready` first had finished the build: killed all the same).
 */
function killDuringBuild(runtime: string, pluginDir: string, id: string, killAt: string) {
  return new Promise<{ pid: number; landed: boolean }>((resolve, reject) => {
    const child: ChildProcess = spawn(
      process.execPath,
      [join(REPO, 'test/fixtures/hosts/image-build-host.mjs'), runtime, pluginDir, id],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let landed: boolean | undefined;
    let out = '';
    const kill = (at: boolean) => {
      if (landed !== undefined) return;
      landed = at;
      child.kill('SIGKILL');
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const lines = out.split('\n');
      out = lines.pop() ?? '';
      for (const line of lines) {
        if (line === 'ready') kill(false);
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { msg?: string; image?: string };
        if (entry.image?.startsWith(`${imageName}:`) && entry.msg?.startsWith(killAt)) kill(true);
      }
    });
    child.once('exit', (_code, signal) => {
      if (signal === 'SIGKILL' && landed !== undefined) resolve({ pid: child.pid as number, landed });
      else reject(new Error(`the host exited on its own (${signal ?? _code}) before "${killAt}"`));
    });
  });
}

describe('a host killed with SIGKILL during an image build', () => {
  it('leaves no tag on a partial image: the next host builds again or uses a whole one, serves, and removes the dead build contexts', async () => {
    // A plugin of its own (a new id: a new image), with 48 MiB of files so that its build takes a while.
    const id = `crash.image-${process.pid}`;
    imageName = `reed-plugin-${id}`;
    const plugins = tempDir('reed-crash-image-');
    const pluginDir = join(plugins, 'hello');
    cpSync(join(REPO, 'examples/plugins/hello'), pluginDir, { recursive: true });
    const manifest = readFileSync(join(pluginDir, 'plugin.toml'), 'utf8');
    writeFileSync(join(pluginDir, 'plugin.toml'), manifest.replace('id = "example.hello"', `id = "${id}"`));
    writeFileSync(join(pluginDir, 'padding.bin'), Buffer.alloc(48 * 1024 * 1024, id));

    const killed: { pid: number; landed: boolean; tagged: number }[] = [];
    for (const killAt of KILL_AT) {
      const runtime = tempDir('reed-crash-host-');
      writeFileSync(join(runtime, 'reed.toml'), '[signatures]\nrequire = "none"\n');
      const { pid, landed } = await killDuringBuild(runtime, pluginDir, id, killAt);
      // Whatever the engine has under the plugin's name now is a finished build of ours: its tag is its hash.
      const images = await taggedImages();
      for (const image of images) {
        expect(image.labels[LABEL_MANAGED]).toBe('true');
        const hash = image.labels[LABEL_IMAGE_HASH] ?? '';
        expect(image.tags).toEqual([`${imageName}:${hash.slice(0, 32)}`]);
      }
      killed.push({ pid, landed, tagged: images.length });
    }
    // biome-ignore lint/suspicious/noConsole: where each kill landed (docs/RELIABILITY.md)
    console.log(
      `image build kills (landed: during the build; tagged: images after the kill): ${JSON.stringify(killed)}`,
    );
    // The first kill comes before the build has sent anything: no image can have been tagged.
    expect(killed[0]).toEqual({ pid: killed[0]?.pid, landed: true, tagged: 0 });
    const contexts = () =>
      readdirSync(tmpdir()).filter((n) =>
        killed.some((k) => new RegExp(`^reed-image-h\\d+\\.${k.pid}\\.`).test(n)),
      );
    // Each killed host left its build context behind (a copy of the plugin's files).
    expect(contexts().length).toBeGreaterThan(0);

    // A later host: builds the image or uses the whole one, and serves from it.
    const started = await startHost([plugins], {
      mode: 'container',
      plugins: [id],
      reedToml: '[signatures]\nrequire = "none"\n',
      supervision: { startTimeoutMs: 120_000 },
      docker,
    });
    hosts.push(started.host);
    expect(text((await started.host.call(id, 'echo', Buffer.from('whole'))).output)).toBe('whole');
    const images = await taggedImages();
    expect(images).toHaveLength(1);
    // Its first build removed the dead hosts' contexts (a live host's would have been left).
    expect(contexts()).toEqual([]);
    expect(existsSync(pluginDir)).toBe(true);
  }, 900_000);
});
