/**
 * One rule for structured values a plugin hands the host, in every sandbox mode (issue 10, class 16):
 * nesting at most MAX_DATA_DEPTH deep, and every integer a safe integer (|n| <= 2^53 - 1).
 *
 * Why: a `[configuration]` with an integer above 2^53 (TOML parses it to a BigInt) or nested 20,000 deep
 * loaded in mode `none`, but process mode sends the configuration to the runner as JSON, which cannot carry a
 * BigInt and overflows the stack on deep values, so the same manifest failed there with an unclear
 * `init_failed`. Enforcing the rule at validate makes every mode see the same, JSON-safe value. The same depth
 * cap bounds JSON data a plugin passes to the host at run time (content, event data), before it is parsed.
 */

/** The deepest nesting of tables/arrays (configuration) or objects/arrays (JSON data) the host accepts. */
export const MAX_DATA_DEPTH = 32;

/**
 * The first problem with a `[configuration]` value, as the field (`configuration.a.b[2]`) and a reason, or
 * undefined. Iterative, so a value nested deeper than the JavaScript stack cannot crash validation.
 */
export function configurationProblem(
  configuration: Record<string, unknown>,
): { field: string; reason: string } | undefined {
  // Each value's place is kept as its parent and its key; the field path is spelled only for the value reported.
  const stack: Place[] = [];
  for (const [key, value] of Object.entries(configuration)) {
    stack.push({ value, key, depth: 0 });
  }
  while (stack.length > 0) {
    const place = stack.pop() as Place;
    const { value, depth } = place;
    if (
      typeof value === 'bigint' ||
      (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value))
    ) {
      return {
        field: fieldOf(place),
        reason: `is the integer ${String(value)}, outside the safe range -(2^53 - 1) to 2^53 - 1 (JSON and JavaScript numbers cannot hold it exactly): write it as a string`,
      };
    }
    if (value === null || typeof value !== 'object' || value instanceof Date) continue;
    if (depth + 1 > MAX_DATA_DEPTH) {
      return {
        field: fieldOf(place),
        reason: `nests tables and arrays more than ${MAX_DATA_DEPTH} deep: flatten it`,
      };
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        stack.push({ value: item, key: i, parent: place, depth: depth + 1 });
      });
    } else {
      for (const [key, item] of Object.entries(value)) {
        stack.push({ value: item, key, parent: place, depth: depth + 1 });
      }
    }
  }
  return undefined;
}

/** A value inside the configuration: its key in its table (a string) or its index in its array (a number). */
interface Place {
  value: unknown;
  key: string | number;
  parent?: Place;
  depth: number;
}

/** `configuration.a.b[2]`: the path of keys and indexes from the configuration down to `place`. */
function fieldOf(place: Place): string {
  const segments: string[] = [];
  for (let at: Place | undefined = place; at !== undefined; at = at.parent) {
    segments.push(typeof at.key === 'number' ? `[${at.key}]` : keyPath(at.key));
  }
  return `configuration${segments.reverse().join('')}`;
}

/** A key as it goes in a field path: bare when plain, else quoted (a key can hold any character). */
function keyPath(key: string): string {
  return /^[A-Za-z0-9_-]{1,128}$/.test(key) ? `.${key}` : `[${JSON.stringify(key.slice(0, 128))}]`;
}

/**
 * Whether JSON text nests objects/arrays deeper than `max`. A linear scan of the text (brackets outside
 * strings), so a hostile 64 MiB document of `[` is refused before JSON.parse builds anything from it.
 */
export function jsonTooDeep(text: string, max = MAX_DATA_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
