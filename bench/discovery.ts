import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverPlugins } from '../src/discovery/discover.js';
import { loadHostConfig, validationContext } from '../src/host/host-config.js';
import { validatePlugins } from '../src/validation/validator.js';
import { fmt, interleave, median, printTable } from './report.js';

const PLUGINS = 10_000;
const RUNS = 5;
const TARGET_PER_SECOND = 10_000;

/** Writes `count` plugin directories, each a realistic manifest and a small module; a few depend on others. */
export function generate(root: string, count: number): void {
  const wasm = Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  for (let i = 0; i < count; i++) {
    const dir = join(root, `plugin-${String(i).padStart(5, '0')}`);
    mkdirSync(dir);
    const dependency =
      i > 0 && i % 10 === 0
        ? `\n[[requirements.dependencies]]\nid = "bench.plugin-${i - 1}"\nversion = "^1.0"\n`
        : '';
    writeFileSync(
      join(dir, 'plugin.toml'),
      `[metadata]
id = "bench.plugin-${i}"
name = "Benchmark plugin ${i}"
version = "1.0.${i % 50}"
api_version = "1.0.0"
priority = ${i % 200}
description = "A generated plugin for the discovery benchmark."
authors = ["Bench <bench@example.com>"]
license = "MIT"

[requirements]
capabilities = ["storage"]
${dependency}
[permissions]
storage = "readwrite"
log = true

[permissions.events]
emit = ["bench.*"]

[limits]
memory_mb = 32
call_timeout_ms = 1000

[configuration]
greeting = "hello"
items = [1, 2, 3]
`,
    );
    writeFileSync(join(dir, 'plugin.wasm'), wasm);
  }
}

export function runDiscoveryBench(): boolean {
  const root = mkdtempSync(join(tmpdir(), 'reed-bench-discovery-'));
  try {
    generate(root, PLUGINS);
    const config = loadHostConfig({
      cwd: root,
      env: {},
      overrides: { pluginDirs: [root], defaultSearchPaths: false },
    });
    let valid = 0;
    const ours = () => {
      const result = discoverPlugins({ searchPaths: config.searchPaths, fileLimits: config.fileLimits });
      valid = validatePlugins(result.candidates, validationContext(config)).load.length;
    };
    // The floor: list the search path and each plugin directory, and read every manifest. No parsing.
    let bytes = 0;
    const baseline = () => {
      bytes = 0;
      for (const name of readdirSync(root)) {
        const dir = join(root, name);
        readdirSync(dir);
        bytes += readFileSync(join(dir, 'plugin.toml')).length;
      }
    };
    const { ours: t, base: b } = interleave(RUNS, ours, baseline);
    if (valid !== PLUGINS) throw new Error(`expected ${PLUGINS} valid plugins, got ${valid}`);
    const perSecond = PLUGINS / (median(t) / 1000);
    const basePerSecond = PLUGINS / (median(b) / 1000);
    const met = perSecond >= TARGET_PER_SECOND;
    printTable(
      `discovery: discover + validate ${fmt(PLUGINS)} plugins (median of ${RUNS}; ${fmt(bytes / 1024)} KiB of manifests)`,
      [
        {
          figure: 'plugins/s',
          value: fmt(perSecond),
          baseline: `${fmt(basePerSecond)} (read only)`,
          ratio: `${fmt(perSecond / basePerSecond, 2)}x of baseline`,
          target: `>= ${fmt(TARGET_PER_SECOND)}/s`,
          met,
        },
        {
          figure: 'time per plugin',
          value: `${fmt((median(t) * 1000) / PLUGINS, 1)} us`,
          baseline: `${fmt((median(b) * 1000) / PLUGINS, 1)} us`,
          ratio: `${fmt(median(t) / median(b), 2)}x`,
          target: '',
        },
      ],
    );
    return met;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
