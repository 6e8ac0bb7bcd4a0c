// Writes docs/CODES.md from src/codes.ts (sections from its `// Heading` comments). `npm run docs:codes`.
import { readFileSync, writeFileSync } from 'node:fs';

// An entry too long for one line is formatted (biome) as `code:` then its text on the next line: joined first.
const source = readFileSync('src/codes.ts', 'utf8').replace(/^( {2}[a-z_]+):\n {4}'/gm, "$1: '");
const sections = [];
for (const line of source.split('\n')) {
  const heading = /^ {2}\/\/ (.*)$/.exec(line);
  if (heading) sections.push({ title: heading[1], rows: [] });
  const code = /^ {2}([a-z_]+): '((?:[^'\\]|\\.)*)',$/.exec(line);
  if (code && sections.length > 0) {
    const meaning = code[2].replace(/\\u2019/g, '\u2019').replace(/\\'/g, "'");
    sections.at(-1).rows.push(`| \`${code[1]}\` | ${meaning} |`);
  }
}
const out = [
  '# Error and diagnostic codes',
  '',
  'Every code is stable: match on it, never on the message. Diagnostics (from discovery and validation)',
  'and `ReedError`s (thrown by the API, printed by the CLI) share these codes. Warnings are marked; everything',
  'else is an error. The source of truth is `src/codes.ts`; this page is generated from it by',
  '`npm run docs:codes`, and a test keeps the two in step.',
  '',
];
for (const s of sections) out.push(`## ${s.title}`, '', '| code | meaning |', '|---|---|', ...s.rows, '');
writeFileSync('docs/CODES.md', out.join('\n'));
