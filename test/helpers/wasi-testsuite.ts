import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { REPO } from './cli.js';
import { manifestToml, writePlugin } from './plugin-tree.js';

/** The official WASI test suite, vendored (test/fixtures/third-party/wasi-testsuite/PROVENANCE.md). */
export const SUITE = join(REPO, 'test/fixtures/third-party/wasi-testsuite');

/** A program's .json, as the suite's test runner reads it (doc/specification.md, the legacy form). */
export interface WasiTestSpec {
  args?: string[];
  env?: Record<string, string>;
  /** A directory (beside the program) preopened as the guest's `/`. */
  root?: string;
  exit_code?: number;
  /** What stdout must start with (the runner reads as many bytes as this has). */
  stdout?: string;
  stderr?: string;
}

export interface WasiTestProgram {
  /** assemblyscript, c or rust. */
  lang: string;
  name: string;
  wasm: string;
  spec: WasiTestSpec;
  /** A plugin id for it. */
  id: string;
}

/**
 * Every wasm32-wasip1 program of the suite: the prebuilt AssemblyScript and Rust ones, and the C ones built from
 * their sources by `npm run build` (scripts/build-plugins.mjs). A C program whose .wasm is missing is listed all
 * the same, so its test fails rather than disappears.
 */
export function wasiTestPrograms(): WasiTestProgram[] {
  return ['assemblyscript', 'c', 'rust'].flatMap((lang) => {
    const dir = join(SUITE, lang);
    const sources = readdirSync(dir).filter((f) => (lang === 'c' ? f.endsWith('.c') : f.endsWith('.wasm')));
    return sources.sort().map((file) => {
      const name = basename(file).replace(/\.(c|wasm)$/, '');
      const json = join(dir, `${name}.json`);
      const spec: WasiTestSpec = existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : {};
      return { lang, name, wasm: join(dir, `${name}.wasm`), spec, id: `wasi.${lang}.${name.toLowerCase()}` };
    });
  });
}

/** A fresh copy of a program's root directory in `into`, for it to change as it likes. */
export function copyRoot(program: WasiTestProgram, into: string): string {
  const root = join(into, `${program.lang}-${program.name}`);
  cpSync(join(SUITE, program.lang, program.spec.root ?? ''), root, { recursive: true });
  return root;
}

/** A plugin directory for a program under `root`: its manifest carries the program's WASI args and environment. */
export function writeTestPlugin(
  root: string,
  program: WasiTestProgram,
  extra: Record<string, unknown> = {},
): string {
  return writePlugin(
    root,
    program.id,
    manifestToml({
      id: program.id,
      wasi: { args: program.spec.args ?? [], env: program.spec.env ?? {} },
      ...extra,
    }),
    { 'plugin.wasm': readFileSync(program.wasm) },
  );
}
