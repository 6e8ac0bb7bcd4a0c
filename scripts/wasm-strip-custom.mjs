// Drops every custom section (id 0: debug info, names, producers) from WASM modules, keeping every other section
// byte for byte. Used once to vendor the WASI test suite's Rust programs (test/fixtures/third-party/wasi-testsuite/
// PROVENANCE.md): custom sections are never executed, and they made each program about 2 MB.
//
//   node scripts/wasm-strip-custom.mjs IN.wasm OUT.wasm [IN.wasm OUT.wasm ...]
import { readFileSync, writeFileSync } from 'node:fs';

function strip(bytes) {
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== 0x6d736100) throw new Error('not a WASM module');
  const kept = [bytes.subarray(0, 8)];
  let at = 8;
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at++];
    let size = 0;
    let shift = 0;
    let byte;
    do {
      byte = bytes[at++];
      size |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    const end = at + (size >>> 0);
    if (end > bytes.length) throw new Error('a section runs past the end of the module');
    if (id !== 0) kept.push(bytes.subarray(start, end));
    at = end;
  }
  return Buffer.concat(kept);
}

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
  process.stderr.write('usage: node scripts/wasm-strip-custom.mjs IN.wasm OUT.wasm [IN OUT ...]\n');
  process.exit(2);
}
for (let i = 0; i < args.length; i += 2) writeFileSync(args[i + 1], strip(readFileSync(args[i])));
