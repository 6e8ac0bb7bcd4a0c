// The official WASI test suite (WebAssembly/wasi-testsuite, its wasm32-wasip1 programs: AssemblyScript, C and Rust),
// each run as a command plugin as the suite's own runner runs it (test-runner/, doc/specification.md): its args and
// environment, its directory preopened as `/` when it names one, its exit code and the start of its stdout checked.
// Every program runs through a PluginHost in modes none and process (those without a directory in container mode
// too, under runc and gVisor: a container each, about a minute per runtime); a directory program gets a data directory
// (permissions.filesystem, `[wasi] preopen = "/"`) seeded with a fresh copy of its fs-tests.dir. The directory
// programs run again on WasmPlugin directly with paths resolved by the manual walk used where openat2 is missing.
import { chmodSync, cpSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHostConfig } from '../../src/host/host-config.js';
import { PluginHost } from '../../src/host/plugin-host.js';
import { MemoryStorage } from '../../src/host/services.js';
import { forceManualResolution } from '../../src/runtime/wasm/wasi-path.js';
import { type LogLine, startHost, text } from '../helpers/host.js';
import { lastingDir, tempDir } from '../helpers/plugin-tree.js';
import { wasiPlugin } from '../helpers/wasi-plugin.js';
import {
  copyRoot,
  SUITE,
  type WasiTestProgram,
  wasiTestPrograms,
  writeTestPlugin,
} from '../helpers/wasi-testsuite.js';

const PROGRAMS = wasiTestPrograms();
const WITHOUT_DIR = PROGRAMS.filter((p) => p.spec.root === undefined);
const WITH_DIR = PROGRAMS.filter((p) => p.spec.root !== undefined);

/** The outcome the suite's runner would check: exit code 0 and stdout's start, or the exit code as a status. */
async function expectOutcome(
  program: WasiTestProgram,
  run: () => Promise<{ output: Uint8Array }>,
  stderr: () => string,
) {
  const want = program.spec.exit_code ?? 0;
  if (want !== 0) {
    await expect(run()).rejects.toMatchObject({ code: 'plugin_error', details: { status: want } });
    return;
  }
  let output: Uint8Array;
  try {
    ({ output } = await run());
  } catch (error) {
    throw new Error(
      `${program.lang}/${program.name} failed: ${(error as Error).message}\nstderr:\n${stderr()}`,
    );
  }
  const stdout = program.spec.stdout;
  if (stdout !== undefined) expect(text(output).slice(0, stdout.length)).toBe(stdout);
}

it('finds the whole suite: 12 AssemblyScript, 14 C and 46 Rust programs, 49 of them with a directory', () => {
  const count = (lang: string) => PROGRAMS.filter((p) => p.lang === lang).length;
  expect([count('assemblyscript'), count('c'), count('rust')]).toEqual([12, 14, 46]);
  expect([WITHOUT_DIR.length, WITH_DIR.length]).toEqual([23, 49]);
});

describe.each([
  ['none', 'none', undefined],
  ['process', 'process', undefined],
  ['container (runc)', 'container', 'runc'],
  ['container (runsc, gVisor)', 'container', 'runsc'],
] as const)('programs without a directory, mode %s', (_name, mode, runtime) => {
  let host: PluginHost;
  let logs: { pluginId?: string; msg: string }[];
  beforeAll(async () => {
    const root = lastingDir('reed-wasi-suite-');
    for (const program of WITHOUT_DIR) writeTestPlugin(root, program);
    const reedToml = runtime === undefined ? '' : `[sandbox]\nruntime = "${runtime}"\n`;
    ({ host, logs } = await startHost([root], { mode, reedToml }));
  }, 300_000);
  afterAll(() => host?.close());

  it.each(WITHOUT_DIR.map((p) => [`${p.lang}/${p.name}`, p] as const))('%s', async (_name, program) => {
    await expectOutcome(
      program,
      () => host.call(program.id, '_start', ''),
      () =>
        logs
          .filter((l) => l.pluginId === program.id)
          .map((l) => l.msg)
          .join('\n'),
    );
  });
});

/** Everything under `dir` readable and writable by all, as docs/MANIFEST.md asks of seeded files. */
function openUp(dir: string): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      chmodSync(path, 0o777);
      openUp(path);
    } else chmodSync(path, 0o666);
  }
}

describe.each(['none', 'process'] as const)('programs with a directory, mode %s', (mode) => {
  let host: PluginHost;
  const logs: LogLine[] = [];
  beforeAll(async () => {
    const top = lastingDir('reed-wasi-suite-dirs-');
    const plugins = join(top, 'plugins');
    const dataDir = join(top, 'data');
    for (const program of WITH_DIR) {
      writeTestPlugin(plugins, program, {
        permissions: { filesystem: 'readwrite' },
        wasi: { args: program.spec.args ?? [], env: program.spec.env ?? {}, preopen: '/' },
      });
      // The operator's seeding (docs/MANIFEST.md): the directory's content before the host makes it its own.
      const seeded = join(dataDir, 'files', program.id);
      cpSync(join(SUITE, program.lang, program.spec.root ?? ''), seeded, { recursive: true });
      openUp(seeded);
    }
    writeFileSync(
      join(top, 'reed.toml'),
      `cache_dir = "cache"\ndata_dir = "${dataDir}"\nruntime_dir = "runtime"\n[policy.permissions]\nfilesystem = "readwrite"\n`,
    );
    const config = loadHostConfig({
      cwd: top,
      env: {},
      home: top,
      overrides: { pluginDirs: [plugins], defaultSearchPaths: false },
    });
    const logger = pino(
      { level: 'debug' },
      { write: (line: string) => logs.push(JSON.parse(line) as LogLine) },
    );
    host = await PluginHost.start({
      config,
      logger,
      services: { storage: new MemoryStorage() },
      forceMode: mode,
    });
  }, 300_000);
  afterAll(() => host?.close());

  it.each(WITH_DIR.map((p) => [`${p.lang}/${p.name}`, p] as const))('%s', async (_name, program) => {
    await expectOutcome(
      program,
      () => host.call(program.id, '_start', ''),
      () =>
        logs
          .filter((l) => l.pluginId === program.id)
          .map((l) => l.msg)
          .join('\n'),
    );
  });
});

describe('programs with a directory, mode none, paths resolved by the manual walk', () => {
  beforeAll(() => forceManualResolution(true));
  afterAll(() => forceManualResolution(false));

  it.each(WITH_DIR.map((p) => [`${p.lang}/${p.name}`, p] as const))('%s', async (_name, program) => {
    const dirs = tempDir('reed-wasi-root-');
    mkdirSync(dirs, { recursive: true });
    const hostPath = copyRoot(program, dirs);
    const stderr: string[] = [];
    const plugin = await wasiPlugin(program.wasm, {
      pluginId: program.id,
      hostPath,
      guestName: '/',
      args: program.spec.args ?? [],
      env: program.spec.env ?? {},
      log: (message) => stderr.push(message),
    });
    await expectOutcome(
      program,
      async () => plugin.call('_start', new Uint8Array(0), performance.now() + 30_000),
      () => stderr.join('\n'),
    );
  });
});
