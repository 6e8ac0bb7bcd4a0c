// dist/runner/main.js (scripts/bundle.mjs) sets the runner's heap flags to their defaults before runner.js loads, so
// that the built-ins it loads come from Node's code cache, and gives them back when runner.js first takes
// node:worker_threads. What must hold whatever main.js does with the flags: the runner's own heap keeps the limits
// its command line gave it, and a Worker it starts gets them too (a Worker's heap is sized from the flags as they are
// then). Runs main.js from dist/ (npm run build) with a runner.js of the test's own beside it, as process mode runs
// it (Node's permission model: the flags go through v8-flags.node).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { permissionFlag } from '../../src/backends/process/runner-command.js';
import { REPO } from '../helpers/cli.js';

const HEAP = ['--max-old-space-size=128', '--max-semi-space-size=1'];

/** The heap's limit and its young generation's size after a churn that grows it past 1 MiB semi-spaces by default. */
const CHURN = `const v8 = require('node:v8');
const heap = () => [v8.getHeapStatistics().heap_size_limit, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size];
let keep = [];
for (let i = 0; i < 2e6; i++) { keep.push({ i, a: [i] }); if (keep.length > 20000) keep = []; }
const churned = heap();`;

/** runner.js: the main thread's heap after a churn, before and after node:worker_threads, and a Worker's. */
const RUNNER_JS = `(function (exports, require, module, __filename, __dirname) {
${CHURN}
const { Worker } = require('node:worker_threads');
const worker = new Worker(
  "const v8 = require('node:v8'); require('node:worker_threads').parentPort.postMessage([v8.getHeapStatistics().heap_size_limit, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size])",
  { eval: true },
);
worker.once('message', (inWorker) => {
  process.stdout.write(JSON.stringify({ churned, after: heap(), inWorker }));
  worker.terminate();
});
})`;

describe("the runner's heap flags (dist/runner/main.js)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'reed-heap-flags-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keep its heap limits and give a Worker the same ones', () => {
    for (const file of ['main.js', 'package.json', 'v8-flags.node'])
      if (existsSync(join(REPO, 'dist/runner', file)))
        copyFileSync(join(REPO, 'dist/runner', file), join(dir, file));
    writeFileSync(join(dir, 'runner.js'), RUNNER_JS);
    // The same churn in a plain node with the same flags, and in one without them (V8's defaults).
    const plain = (flags: string[]) =>
      JSON.parse(
        spawnSync(
          process.execPath,
          [...flags, '-e', `${CHURN} process.stdout.write(JSON.stringify(churned))`],
          {
            encoding: 'utf8',
          },
        ).stdout,
      ) as [number, number];
    const [limit, young] = plain(HEAP);
    const [defaultLimit, defaultYoung] = plain([]);
    // Else this test could not tell the runner's limits from V8's defaults.
    expect(defaultLimit).toBeGreaterThan(limit);
    expect(defaultYoung).toBeGreaterThan(young);
    const run = spawnSync(
      process.execPath,
      [
        ...HEAP,
        permissionFlag(),
        `--allow-fs-read=${dir}`,
        '--allow-worker',
        '--allow-addons',
        '--no-warnings',
        join(dir, 'main.js'),
      ],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    );
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout) as Record<'churned' | 'after' | 'inWorker', [number, number]>;
    // While the flags are V8's defaults (runner.js's start), the heap keeps its limit and its young generation's cap.
    expect(out.churned).toEqual([limit, young]);
    expect(out.after[0]).toBe(limit);
    expect(out.inWorker[0]).toBe(limit);
    expect(out.inWorker[1]).toBeLessThanOrEqual(young);
  });
});
