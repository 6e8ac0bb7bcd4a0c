// Writes compose/rootfs/: the shared libraries that the native addons in node_modules need beyond what the Node
// runtime itself links (lmdb, rolldown for vitest, koffi, ...), copied from this machine at the paths its loader
// finds them. images/Dockerfile.orchestrator lays them over the base image FROM scratch, which holds only Node
// and its own libraries. With a normal base image (REED_BASE_IMAGE from a registry) this writes nothing:
// that image has its own libraries, and this machine's must not overwrite them.
//
//   node scripts/compose-rootfs.mjs [--empty]
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { sharedLibraries } from '../dist/src/backends/shared/node-runtime.js';
import { checkElf } from '../dist/src/runtime/native/check-library.js';

const root = 'compose/rootfs';
rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });
if (process.argv.includes('--empty')) process.exit(0);

const inBase = new Set(sharedLibraries(process.execPath));
const wanted = new Set();
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (entry.isFile() && entry.name.endsWith('.node')) addonLibraries(path);
  }
};
const addonLibraries = (file) => {
  try {
    checkElf(readFileSync(file), file, 'compose'); // prebuilds for other machines are skipped
    for (const lib of sharedLibraries(file)) if (!inBase.has(lib)) wanted.add(lib);
  } catch {
    // not for this machine (another architecture, musl): never loaded here
  }
};
walk('node_modules');
for (const lib of wanted) {
  mkdirSync(join(root, dirname(lib)), { recursive: true });
  cpSync(lib, join(root, lib), { dereference: true });
}
console.error(`compose-rootfs: ${wanted.size} libraries beyond Node's: ${[...wanted].join(' ') || 'none'}`);
