/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * The samples of a Prometheus text exposition (version 0.0.4: what GET /metrics answers), comments skipped. Label
 * values are unescaped (\\, \", \n). Lines that do not parse are skipped; at most `maxSamples` are kept.
 */
export function parseSamples(text: string, maxSamples = 1_000_000): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (out.length >= maxSamples) break;
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.lastIndexOf(' ');
    if (space <= 0) continue;
    const value = Number(line.slice(space + 1));
    if (brace < 0 || brace > space) {
      out.push({ name: line.slice(0, space), labels: {}, value });
      continue;
    }
    const labels: Record<string, string> = Object.create(null);
    const pattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/gy;
    pattern.lastIndex = brace + 1;
    for (;;) {
      const match = pattern.exec(line);
      if (match === null) break;
      labels[match[1] as string] = (match[2] as string).replace(/\\(.)/g, (_, c: string) =>
        c === 'n' ? '\n' : c,
      );
      if (line[pattern.lastIndex] === ',') pattern.lastIndex++;
    }
    out.push({ name: line.slice(0, brace), labels, value });
  }
  return out;
}

/** `name{a="x",b="y"}` -> value, labels in the order written: for tests and quick lookups. */
export function sampleMap(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
