// Compiles every .wat under examples/ and test/fixtures/ to a .wasm beside it (named by the `;; out:` line
// at the top of the file, else the same name), so that fixtures and examples live in git as readable sources.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import wabtFactory from 'wabt';

const roots = ['examples', 'test/fixtures'];
const wabt = await wabtFactory();

function* watFiles(dir) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    const st = statSync(path, { throwIfNoEntry: false });
    if (st?.isDirectory()) yield* watFiles(path);
    else if (name.endsWith('.wat')) yield path;
  }
}

let count = 0;
for (const root of roots) {
  for (const file of watFiles(root)) {
    const text = readFileSync(file, 'utf8');
    const out =
      /^;; out: (\S+)/.exec(text)?.[1] ??
      file
        .replace(/\.wat$/, '.wasm')
        .split('/')
        .pop();
    const module = wabt.parseWat(file, text, { multi_value: true, bulk_memory: true });
    const { buffer } = module.toBinary({});
    module.destroy();
    writeFileSync(join(dirname(file), out), buffer);
    count++;
  }
}
process.stderr.write(`build-wasm: ${count} module(s)\n`);
