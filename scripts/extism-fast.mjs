// Assembles src/runtime/wasm/extism-fast.wat (wabt, bulk memory) and writes its bytes into extism-fast.ts, after
// an edit of the text. test/unit/extism-fast.test.ts fails while the two differ.
//
//   node scripts/extism-fast.mjs && npx biome format --write src/runtime/wasm/extism-fast.ts
import { readFileSync, writeFileSync } from 'node:fs';
import wabtFactory from 'wabt';

const WAT = new URL('../src/runtime/wasm/extism-fast.wat', import.meta.url);
const TS = new URL('../src/runtime/wasm/extism-fast.ts', import.meta.url);
const OPEN = 'const EXTISM_FAST_BYTES = new Uint8Array([\n';

const wabt = await wabtFactory();
const module = wabt.parseWat('extism-fast.wat', readFileSync(WAT, 'utf8'), { bulk_memory: true });
module.validate();
const bytes = [...module.toBinary({}).buffer];
module.destroy();
const hex = bytes.map((b) => `0x${b.toString(16).padStart(2, '0')}`);
const lines = [];
for (let i = 0; i < hex.length; i += 18) lines.push(`  ${hex.slice(i, i + 18).join(', ')},`);
const ts = readFileSync(TS, 'utf8');
const start = ts.indexOf(OPEN) + OPEN.length;
const end = ts.indexOf(']);', start);
if (start < OPEN.length || end < 0) throw new Error('extism-fast.ts: the byte array was not found');
writeFileSync(TS, `${ts.slice(0, start)}${lines.join('\n')}\n${ts.slice(end)}`);
console.log(`extism-fast.ts: ${bytes.length} bytes`);
