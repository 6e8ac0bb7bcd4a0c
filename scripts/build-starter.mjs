// dist/starter/reed-starter from src/backends/process/reed-starter.c: the starter a root host on cgroup v1 runs
// bwrap through (runner-process.ts, #spawn). Static where the C library allows it (no dynamic linking at each start),
// else dynamic. A machine without a C compiler builds without it: hosts then start bwrap through /bin/sh and
// util-linux's setpriv, as before (~3 ms of CPU more per cold start). Usage: node scripts/build-starter.mjs [outdir]
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const outdir = process.argv[2] ?? 'dist';
const source = fileURLToPath(new URL('../src/backends/process/reed-starter.c', import.meta.url));
const dir = join(outdir, 'starter');
const out = join(dir, 'reed-starter');
mkdirSync(dir, { recursive: true });
const cc = (extra) =>
  spawnSync(process.env.CC ?? 'cc', [...extra, '-O2', '-Wall', '-Werror', '-o', out, source], {
    encoding: 'utf8',
  });
let built = cc(['-static']);
if (built.status !== 0) built = cc([]);
if (built.status === 0) chmodSync(out, 0o755);
else {
  rmSync(out, { force: true });
  console.warn(
    `build-starter: dist/starter/reed-starter not built (${built.error?.message ?? built.stderr.trim()}): root hosts on cgroup v1 start bwrap through /bin/sh and setpriv`,
  );
}
