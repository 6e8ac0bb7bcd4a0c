import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ParsedCandidate } from '../../src/discovery/candidate.js';
import { loadHostConfig } from '../../src/host/host-config.js';
import { scanPlugins } from '../../src/host/scan-plugins.js';
import { REPO } from './cli.js';
import { tempDir } from './plugin-tree.js';

export const EXAMPLES = join(REPO, 'examples/plugins');

/** A manifest of example.hello at `version` greeting with `greeting` (its output tells versions apart). */
export const helloToml = (version: string, greeting: string, id = 'example.hello') =>
  `[metadata]\nid = "${id}"\nname = "Hello"\nversion = "${version}"\napi_version = "1.0.0"\n[permissions]\nlog = true\n[configuration]\ngreeting = "${greeting}"\n`;

/** A plugin directory `root/name` with `manifest` and the module (or library) copied from `from`. */
export function pluginDir(
  root: string,
  name: string,
  manifest: string,
  from = join(EXAMPLES, 'hello'),
): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'plugin.toml'), manifest);
  for (const file of ['plugin.wasm', 'plugin.so'])
    try {
      copyFileSync(join(from, file), join(dir, file));
    } catch {}
  return dir;
}

/** example.hello at `version`, greeting with `greeting`, alone in a fresh search path. Returns the search path. */
export function helloVersion(version: string, greeting: string): string {
  const root = tempDir('reed-version-');
  pluginDir(root, 'hello', helloToml(version, greeting));
  return root;
}

/** The valid candidate with this id found under the search path `dir` (a scan of that directory alone). */
export function candidateIn(dir: string, id: string, loaded: { id: string; version: string }[] = []) {
  const config = loadHostConfig({
    cwd: dir,
    env: {},
    home: dir,
    overrides: { pluginDirs: [dir], defaultSearchPaths: false },
  });
  const found = scanPlugins(config, loaded).candidates.find((c) => c.id === id);
  if (found === undefined || found.manifest === undefined) throw new Error(`no ${id} in ${dir}`);
  if (found.status !== 'valid')
    throw new Error(`${id} in ${dir} is ${found.status}: ${JSON.stringify(found.diagnostics)}`);
  return found as ParsedCandidate;
}

export interface Load {
  /** Every answer of every caller, in the order that caller got them: the output, or `!code`. */
  answers: string[][];
  /**
   * Resolves once every caller has had `n` answers that satisfy `done` in a row at its end, all of them given after
   * this was called (so an answer from before a change never counts).
   */
  until(done: (answer: string) => boolean, n?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `callers` concurrent callers, each calling `call` again as soon as its last call settles, until stopped. Nothing
 * here times anything: the test waits for what the answers say.
 */
export function load(callers: number, call: () => Promise<string>): Load {
  let stopped = false;
  const answers: string[][] = Array.from({ length: callers }, () => []);
  const loops = answers.map(async (mine) => {
    while (!stopped) {
      try {
        mine.push(await call());
      } catch (error) {
        mine.push(`!${(error as { code?: string }).code ?? String(error)}`);
      }
      // Let timers and I/O run between calls, whatever the mode (a call in mode none settles without any I/O).
      await new Promise((r) => setImmediate(r));
    }
  });
  return {
    answers,
    async until(done, n = 3) {
      const from = answers.map((mine) => mine.length);
      const ok = () =>
        answers.every(
          (mine, i) => mine.length - (from[i] as number) >= n && mine.slice(-n).every((a) => done(a)),
        );
      for (let i = 0; i < 4000 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      if (!ok())
        throw new Error(`the load never settled: ${JSON.stringify(answers.map((a) => a.slice(-n)))}`);
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Whether each caller's answers are some of `first`, then only `second` (one switch, never back). */
export function switchedOnce(answers: string[], first: string, second: string): boolean {
  const at = answers.indexOf(second);
  if (at < 0) return false;
  return answers.slice(0, at).every((a) => a === first) && answers.slice(at).every((a) => a === second);
}
