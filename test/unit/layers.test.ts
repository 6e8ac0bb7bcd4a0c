import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// The layering lint (.dependency-cruiser.cjs, run by `npm run lint`): it must reject what it is there to reject, so
// a copy of the real tree gets a few imports that break it, and the project's own config must name each one.

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string; severity: string };
}

function cruise(cwd: string): Violation[] {
  const run = spawnSync(
    process.execPath,
    [CLI, 'src', 'sandbox-runner', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'],
    { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (run.stdout === '') throw new Error(`dependency-cruiser printed nothing: ${run.stderr}`);
  return (JSON.parse(run.stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A copy of src/, sandbox-runner/ and the configs, with `files` (path -> source) added. */
function treeWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'reed-layers-'));
  scratch.push(dir);
  for (const part of ['src', 'sandbox-runner', 'tsconfig.json', '.dependency-cruiser.cjs']) {
    cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  }
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), source);
  }
  return dir;
}

describe('layering lint', () => {
  it('rejects upward imports, runner imports of the host side, unlayered folders and folder cycles', () => {
    const found = cruise(
      treeWith({
        // The ground floor reaching up to the host.
        'src/manifest/upward.ts': "export { PluginHost } from '../host/plugin-host.js';\n",
        // A type-only import counts: protocol reaching up to the backends.
        'src/protocol/upward.ts': "export type { Sandbox } from '../backends/sandbox.js';\n",
        // The runner program reaching into the host.
        'sandbox-runner/upward.ts': "export { loadHostConfig } from '../src/host/host-config.js';\n",
        // A new folder nobody put in a layer: its importers and its own imports are both flagged.
        'src/gadgets/gadget.ts':
          "export { PluginHost } from '../host/plugin-host.js';\nexport const gadget = 1;\n",
        'src/cli/uses-gadget.ts': "export { gadget } from '../gadgets/gadget.js';\n",
        // discovery -> validation, while validation already imports discovery: a cycle between peers.
        'src/discovery/loop.ts': "export type { ValidationContext } from '../validation/context.js';\n",
      }),
    );
    const has = (rule: string, from: string, to?: string) =>
      found.some((v) => v.rule.name === rule && v.from === from && (to === undefined || v.to === to));

    expect(has('layer-ground-imports-up', 'src/manifest/upward.ts', 'src/host/plugin-host.ts')).toBe(true);
    expect(has('layer-protocol-imports-up', 'src/protocol/upward.ts', 'src/backends/sandbox.ts')).toBe(true);
    expect(has('runner-imports-host-side', 'sandbox-runner/upward.ts', 'src/host/host-config.ts')).toBe(true);
    expect(has('unlayered', 'src/cli/uses-gadget.ts', 'src/gadgets/gadget.ts')).toBe(true);
    expect(has('unlayered-importer', 'src/gadgets/gadget.ts', 'src/host/plugin-host.ts')).toBe(true);
    expect(has('folder-cycle', 'src/discovery') || has('folder-cycle', 'src/validation')).toBe(true);
    for (const v of found) expect(v.rule.severity).toBe('error');
  });

  it('rejects dockerode imported anywhere but the engine client', () => {
    const dir = treeWith({
      'src/backends/container/sneaky.ts':
        "import type Dockerode from 'dockerode';\nexport type D = Dockerode;\n",
    });
    // dockerode must resolve for the rule to see where it points.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const found = cruise(dir).map((v) => `${v.rule.name}: ${v.from}`);
    expect(found).toEqual(['dockerode-behind-engine-client: src/backends/container/sneaky.ts']);
  });

  it('finds nothing in the real tree', () => {
    expect(cruise(ROOT).map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)).toEqual([]);
  });
});
