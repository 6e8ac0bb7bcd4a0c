// JSON text of values that may hold BigInts: TOML parses an integer above 2^53 to one, and JSON.stringify throws
// on it. One replacer for every place that serializes such a value (configuration answers, CLI and API output).

/** BigInts as their decimal strings; everything else as JSON.stringify has it. */
export function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** `JSON.stringify(value, null, space)`, with BigInts as decimal strings. Throws as JSON.stringify does otherwise. */
export function stringifyJson(value: unknown, space?: number): string {
  return JSON.stringify(value, bigintAsString, space);
}
