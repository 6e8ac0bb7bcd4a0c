import { isMainThread } from 'node:worker_threads';
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ucs2lengthModule from 'ajv/dist/runtime/ucs2length.js';
import standaloneModule from 'ajv/dist/standalone/index.js';
import type { Diagnostic } from './diagnostics.js';

/**
 * Checks parsed TOML against a TypeBox schema and turns ajv's errors into diagnostics that name the key path,
 * what was expected and what was found. Shared by plugin.toml and reed.toml.
 */

// validateSchema: the schemas are the project's own, constant ones; the main thread checks each against the JSON
// Schema meta-schema when it compiles it (every process compiles the manifest's schema at its first manifest). A
// discovery worker (src/discovery/parallel.ts) that has to compile the same schema again (its validator's code,
// below, did not load) skips that check: it is about half the compile's cost, paid again at every worker's start.
// code.optimize: a worker also skips ajv's optimising passes over the generated code (they drop redundant
// assignments and fold constant conditions; the checks and the errors are the same). They were about half of what
// was left of its compile: the worker's start took 126-172 ms of CPU with them skipped, 140-190 with them (6
// alternating starts each, load ~11), while the manifest's validation took as long either way (5.6-12.4 us against
// 7.3-13.9 us a manifest, 4 alternating rounds of 2,000).
// The instance is made at the first compile: a discovery worker given its validator as code (below) never compiles,
// and ajv's constructor took 5-7 ms of its start (5 worker starts, load ~14).
let ajv: Ajv | undefined;

function schemaCompiler(): Ajv {
  ajv ??= new Ajv({
    allErrors: true,
    verbose: true,
    strict: true,
    allowUnionTypes: true,
    validateSchema: isMainThread,
    code: { optimize: isMainThread, source: true },
  });
  return ajv;
}

export function compileSchema(schema: TSchema): ValidateFunction {
  return schemaCompiler().compile(schema);
}

// code.source (above) keeps each validator's generated code, so that the thread that compiled a schema can hand it
// to a discovery worker as text (ajv's standalone code): the worker evaluates it instead of compiling the schema
// again, 6-15 ms of CPU instead of 48-69 (5 worker starts each, load ~8). Node and the bundler disagree on what a
// default import of these CommonJS modules is (module.exports, or its `default`): both are taken.
const standaloneCode = cjsDefault(standaloneModule) as (ajv: Ajv, validate: ValidateFunction) => string;
const ucs2length = cjsDefault(ucs2lengthModule);

function cjsDefault(imported: unknown): unknown {
  return typeof imported === 'function' ? imported : (imported as { default: unknown }).default;
}

/** A validator compiled by {@link compileSchema}, as code {@link loadValidator} turns back into it. */
export function validatorSource(validate: ValidateFunction): string {
  return standaloneCode(schemaCompiler(), validate);
}

/**
 * The validator of {@link validatorSource}'s code, or undefined when the code does not give one (the caller then
 * compiles the schema). The code comes from this process's own thread, never from a plugin. Of ajv's runtime, the
 * standalone code of the project's schemas asks only for ucs2length (string lengths); any other module is refused.
 */
export function loadValidator(source: string): ValidateFunction | undefined {
  const require = (id: string): unknown => {
    if (id === 'ajv/dist/runtime/ucs2length') return { default: ucs2length };
    throw new Error(`the validator's code asks for ${id}`);
  };
  try {
    const module = { exports: {} as unknown };
    new Function('module', 'exports', 'require', source)(module, module.exports, require);
    const validate = cjsDefault(module.exports);
    return typeof validate === 'function' ? (validate as ValidateFunction) : undefined;
  } catch {
    return undefined;
  }
}

type Locate = (field: string) => Pick<Diagnostic, 'file' | 'field' | 'pluginId'>;

/** Every schema finding: unknown keys as warnings (`manifest_unknown_key`), everything else as errors. */
export function schemaDiagnostics(validate: ValidateFunction, data: unknown, at: Locate): Diagnostic[] {
  if (validate(data)) return [];
  return (validate.errors ?? []).map((error) => schemaDiagnostic(error, at));
}

const TOML_TYPE_NAMES: Record<string, string> = {
  object: 'a table',
  array: 'an array',
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean (true or false)',
};

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (value === null) return 'nothing';
  switch (typeof value) {
    case 'object':
      return 'a table';
    case 'string':
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    case 'number':
      return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
    case 'bigint':
      return `the integer ${value} (too large)`;
    case 'boolean':
      return `the boolean ${value}`;
    default:
      return typeof value;
  }
}

/** `/requirements/dependencies/1/id` -> `requirements.dependencies[1].id` */
export function pointerToField(pointer: string): string {
  let out = '';
  for (const part of pointer.split('/').slice(1)) {
    const key = printable(part.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (/^\d+$/.test(key)) out += `[${key}]`;
    else out += out === '' ? key : `.${key}`;
  }
  return out;
}

/** Escapes control and non-ASCII characters so that a hostile key cannot forge terminal output. */
export function printable(text: string): string {
  const shown = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return shown.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function join(field: string, key: string): string {
  return field === '' ? key : `${field}.${key}`;
}

/**
 * One ajv error as a diagnostic. Long because it is a table: one case per ajv keyword, each a few lines that build
 * that keyword's message, read best side by side.
 */
function schemaDiagnostic(error: ErrorObject, at: Locate): Diagnostic {
  const field = pointerToField(error.instancePath);
  const where = field === '' ? 'the manifest' : `\`${field}\``;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required': {
      const missing = join(field, String(params.missingProperty));
      const props = (error.parentSchema as { properties?: Record<string, { type?: string }> } | undefined)
        ?.properties;
      const type = props?.[String(params.missingProperty)]?.type;
      const expected = type === undefined ? '' : ` (expected ${TOML_TYPE_NAMES[type] ?? type})`;
      return {
        code: 'manifest_missing_field',
        severity: 'error',
        message: `missing required field \`${missing}\`${expected}`,
        ...at(missing),
      };
    }
    case 'type': {
      const expected = String(params.type)
        .split(',')
        .map((t) => TOML_TYPE_NAMES[t] ?? t)
        .join(' or ');
      return {
        code: 'manifest_invalid_type',
        severity: 'error',
        message: `${where} must be ${expected}, found ${describeValue(error.data)}`,
        ...at(field),
      };
    }
    case 'additionalProperties': {
      const key = printable(String(params.additionalProperty));
      const known = Object.keys(
        (error.parentSchema as { properties?: object } | undefined)?.properties ?? {},
      );
      const guess = closest(key, known);
      return {
        code: 'manifest_unknown_key',
        severity: 'warning',
        message: `unknown key \`${join(field, key)}\` is ignored${guess === undefined ? '' : ` (did you mean \`${guess}\`?)`}`,
        ...at(join(field, key)),
      };
    }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return {
        code: 'manifest_invalid_value',
        severity: 'error',
        message: `${where} must be one of ${allowed}, found ${describeValue(error.data)}`,
        ...at(field),
      };
    }
    case 'pattern': {
      const description = (error.parentSchema as { description?: string } | undefined)?.description;
      return {
        code: 'manifest_invalid_value',
        severity: 'error',
        message: `${where} has the wrong form: found ${describeValue(error.data)}${description === undefined ? `, expected to match ${String(params.pattern)}` : `; ${description}`}`,
        ...at(field),
      };
    }
    default:
      return {
        code: 'manifest_invalid_value',
        severity: 'error',
        message: `${where} ${error.message ?? 'is invalid'}, found ${describeValue(error.data)}`,
        ...at(field),
      };
  }
}

/** The known key within edit distance 2 of `key`, for a "did you mean" hint. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}
