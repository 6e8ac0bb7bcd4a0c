import { createHash, hash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import type { ValidateFunction } from 'ajv';
// The two semver functions by their own modules: the package's index loads all of semver (about twice the start-up
// cost), and every discovery worker loads this module when it starts.
import semverValid from 'semver/functions/valid.js';
import semverValidRange from 'semver/ranges/valid.js';
import type { Diagnostic } from '../diagnostics.js';
import { hasErrors } from '../diagnostics.js';
import { compileSchema, loadValidator, schemaDiagnostics, validatorSource } from '../schema-check.js';
import { parseToml, type TomlSyntaxError } from '../toml.js';
import { configurationProblem } from './config-check.js';
import { parseIdleTimeout } from './idle-timeout.js';
import { limitsFromToml } from './limits.js';
import { ManifestSchema, PLUGIN_ID_PATTERN } from './schema.js';
import { topicPatternProblem } from './topic-pattern.js';
import { DEFAULT_PERMISSIONS, DEFAULT_PRIORITY, type PluginManifest } from './types.js';

export const MANIFEST_FILE = 'plugin.toml';
export const DEFAULT_MAX_MANIFEST_BYTES = 64 * 1024;

export interface ManifestParseResult {
  /** Present when the manifest has no errors (it may have warnings). */
  manifest?: PluginManifest;
  /** The plugin id when it could be read, even from an otherwise broken manifest: discovery dedups on it. */
  id?: string;
  /**
   * SHA-256 (hex) of the bytes parsed, when the file could be read: the host compares it with the verified bytes
   * of the manifest, so that the manifest it runs with is the one a signature covers (issue 10, class 12).
   */
  sha256?: string;
  diagnostics: Diagnostic[];
}

/** The manifest's validator, compiled at its first use, or given as code by the thread that compiled it. */
let validateSchema: ValidateFunction | undefined;

function manifestValidator(): ValidateFunction {
  validateSchema ??= compileSchema(ManifestSchema);
  return validateSchema;
}

/** The manifest's validator as code, for a discovery worker to take with {@link useManifestValidator}. */
export function manifestValidatorSource(): string {
  // Made once: a kept discovery worker compares it with the code it loaded last, and ajv's code generation is
  // not free.
  validatorCode ??= validatorSource(manifestValidator());
  return validatorCode;
}
let validatorCode: string | undefined;

/** Validates manifests with the validator of this code (from {@link manifestValidatorSource}) when it loads. */
export function useManifestValidator(source: string): void {
  validateSchema = loadValidator(source) ?? validateSchema;
}
const ID_RE = new RegExp(PLUGIN_ID_PATTERN);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads `file` (at most `maxBytes`) and parses it; never throws for bad input. */
export function readManifest(file: string, maxBytes = DEFAULT_MAX_MANIFEST_BYTES): ManifestParseResult {
  let bytes: Buffer;
  try {
    bytes = readCapped(file, maxBytes);
  } catch (error) {
    if (error instanceof ManifestTooLarge) {
      return fail(
        file,
        'manifest_too_large',
        `manifest is ${error.size} bytes, above the cap of ${maxBytes} bytes`,
      );
    }
    const reason = error instanceof Error ? error.message : String(error);
    return fail(file, 'manifest_unreadable', `cannot read manifest: ${reason}`);
  }
  return parseManifestBytes(bytes, file);
}

/**
 * The rest of {@link readManifest} once the bytes are read (by it, or by {@link readManifestOnce}): hash, decode,
 * parse.
 */
export function parseManifestBytes(bytes: Buffer, file: string): ManifestParseResult {
  const sha256 = sha256Hex(bytes);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return {
      ...fail(file, 'manifest_syntax', 'manifest is not valid UTF-8 (TOML files must be UTF-8)'),
      sha256,
    };
  }
  return { ...parseManifest(text, file), sha256 };
}

/** Parses manifest text. `file` is only used to locate diagnostics. */
export function parseManifest(text: string, file: string): ManifestParseResult {
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (error) {
    const e = error as TomlSyntaxError;
    return {
      diagnostics: [
        {
          code: 'manifest_syntax',
          severity: 'error',
          message: `TOML syntax error: ${e.message}`,
          file,
          ...(e.line === undefined ? {} : { line: e.line, column: e.column ?? 1 }),
        },
      ],
    };
  }

  const diagnostics: Diagnostic[] = [];
  const metadata = raw.metadata as Record<string, unknown> | undefined;
  const rawId = metadata !== null && typeof metadata === 'object' ? metadata.id : undefined;
  // Only an id of the documented form is trusted for dedup and messages (a hostile one could hold escapes).
  const id = typeof rawId === 'string' && ID_RE.test(rawId) ? rawId : undefined;
  const at = (field: string): Pick<Diagnostic, 'file' | 'field' | 'pluginId'> => ({
    file,
    field,
    ...(id === undefined ? {} : { pluginId: id }),
  });

  diagnostics.push(...schemaDiagnostics(manifestValidator(), raw, at));
  if (hasErrors(diagnostics)) return { ...(id === undefined ? {} : { id }), diagnostics };

  const idleTimeout = (raw.sandbox as { idle_timeout?: string } | undefined)?.idle_timeout;
  const idle = idleTimeout === undefined ? undefined : parseIdleTimeout(idleTimeout);
  if (idle !== undefined && 'problem' in idle) {
    diagnostics.push({
      code: 'manifest_invalid_value',
      severity: 'error',
      message: `sandbox.idle_timeout ${idle.problem}`,
      ...at('sandbox.idle_timeout'),
    });
    return { ...(id === undefined ? {} : { id }), diagnostics };
  }
  const manifest = normalize(raw, idle?.ms);
  checkVersions(manifest, diagnostics, at);
  checkValues(manifest, diagnostics, at);
  if (raw.plugin_type === 'script') {
    diagnostics.push({
      code: 'plugin_type_unsupported',
      severity: 'error',
      message: 'plugin_type "script" is not supported: build the plugin as "wasm" or "native"',
      ...at('plugin_type'),
    });
  }
  if (hasErrors(diagnostics)) return { id: manifest.metadata.id, diagnostics };
  return { manifest, id: manifest.metadata.id, diagnostics };
}

/**
 * MAJOR.MINOR.PATCH of plain numbers, each below 2^53 (at most 15 digits) and without a leading zero: a version
 * semver.valid accepts, judged without building a SemVer object (discovery judges every manifest's two or three).
 * Anything else (pre-release, build, a `v`, spaces) is left to semver's verdict.
 */
const PLAIN_VERSION_RE = /^(?:0|[1-9]\d{0,14})\.(?:0|[1-9]\d{0,14})\.(?:0|[1-9]\d{0,14})$/;

/** The longest `metadata.version`: it names a directory of the plugin store, with a suffix of its own. */
export const MAX_VERSION_LENGTH = 128;

function isPlainVersion(value: string): boolean {
  return value.length <= 47 && PLAIN_VERSION_RE.test(value);
}

function checkVersions(
  m: PluginManifest,
  diagnostics: Diagnostic[],
  at: (field: string) => Pick<Diagnostic, 'file' | 'field' | 'pluginId'>,
): void {
  const mustBeVersion = (value: string | undefined, field: string) => {
    if (value !== undefined && !isPlainVersion(value) && semverValid(value) === null) {
      diagnostics.push({
        code: 'invalid_semver',
        severity: 'error',
        message: `"${value}" is not a semver version (expected MAJOR.MINOR.PATCH, e.g. "1.2.0")`,
        ...at(field),
      });
    }
  };
  // The plugin's own version names its directory in the plugin store (plugin-store.ts VERSION_DIR) and is shown
  // everywhere: it must be written as semver writes it (semver.valid takes " 1.0.1 ", "v1.0.1" and "=1.0.1" too)
  // and fit the store's name (the sixth review: a version with a trailing space installed, then no host could
  // read its store back; one of 240 characters failed the install as internal_error).
  const version = m.metadata.version;
  // Its semver form (null: not semver at all, which mustBeVersion below reports).
  const normal = version === undefined || isPlainVersion(version) ? version : semverValid(version);
  if (
    version !== undefined &&
    normal !== null &&
    (normal !== version || version.length > MAX_VERSION_LENGTH)
  ) {
    diagnostics.push({
      code: 'invalid_semver',
      severity: 'error',
      message:
        version.length > MAX_VERSION_LENGTH
          ? `the version is ${version.length} characters long, more than ${MAX_VERSION_LENGTH}`
          : `"${version}" is a semver version only once normalised: write it as "${normal}"`,
      ...at('metadata.version'),
    });
  }
  mustBeVersion(version, 'metadata.version');
  mustBeVersion(m.metadata.apiVersion, 'metadata.api_version');
  mustBeVersion(m.requirements.minReedVersion, 'requirements.min_reed_version');
  m.requirements.dependencies.forEach((dep, i) => {
    if (semverValidRange(dep.version) === null) {
      diagnostics.push({
        code: 'invalid_semver',
        severity: 'error',
        message: `"${dep.version}" is not a semver range (e.g. "^1.2", ">=1.0.0 <2", "*")`,
        ...at(`requirements.dependencies[${i}].version`),
      });
    }
  });
}

/**
 * Values the schema's forms cannot express: topic patterns within the matcher's caps, and a configuration
 * every mode can carry (src/manifest/config-check.ts). Both checked here, once, so no mode differs.
 */
function checkValues(
  m: PluginManifest,
  diagnostics: Diagnostic[],
  at: (field: string) => Pick<Diagnostic, 'file' | 'field' | 'pluginId'>,
): void {
  for (const kind of ['emit', 'subscribe'] as const) {
    m.permissions.events[kind].forEach((pattern, i) => {
      const problem = topicPatternProblem(pattern);
      if (problem === undefined) return;
      diagnostics.push({
        code: 'manifest_invalid_value',
        severity: 'error',
        message: `event topic pattern "${pattern}" ${problem}: use fewer wildcards or a shorter pattern`,
        ...at(`permissions.events.${kind}[${i}]`),
      });
    });
  }
  const { mode, replicas } = m.sandbox;
  if (mode === 'none' && replicas !== undefined && replicas > 1) {
    diagnostics.push({
      code: 'replicas_unsupported',
      severity: 'error',
      message: replicasInModeNone(replicas),
      ...at('sandbox.replicas'),
    });
  }
  const problem = configurationProblem(m.configuration);
  if (problem !== undefined) {
    diagnostics.push({
      code: 'manifest_invalid_value',
      severity: 'error',
      message: `${problem.field} ${problem.reason}`,
      ...at(problem.field),
    });
  }
}

function normalize(raw: Record<string, unknown>, idleTimeoutMs: number | undefined): PluginManifest {
  // The schema has passed, so the casts below only restate what it checked.
  const r = raw as {
    plugin_type?: 'wasm' | 'native' | 'script';
    entry_point?: string;
    abi?: PluginManifest['abi'];
    metadata: Record<string, unknown>;
    requirements?: Record<string, unknown>;
    permissions?: Record<string, unknown>;
    configuration?: Record<string, unknown>;
    limits?: Record<string, number>;
    sandbox?: {
      mode?: PluginManifest['sandbox']['mode'];
      runtime?: PluginManifest['sandbox']['runtime'];
      replicas?: number;
    };
    wasi?: { args?: string[]; env?: Record<string, string>; preopen?: string };
  };
  const md = r.metadata;
  const req = r.requirements ?? {};
  const perm = r.permissions ?? {};
  const events = (perm.events ?? {}) as { emit?: string[]; subscribe?: string[] };
  return {
    metadata: {
      id: md.id as string,
      name: md.name as string,
      version: md.version as string,
      apiVersion: md.api_version as string,
      priority: (md.priority as number | undefined) ?? DEFAULT_PRIORITY,
      authors: (md.authors as string[] | undefined) ?? [],
      ...pick(md, 'description', 'license', 'homepage'),
    },
    requirements: {
      ...(req.min_reed_version === undefined ? {} : { minReedVersion: req.min_reed_version as string }),
      dependencies: ((req.dependencies as Record<string, unknown>[] | undefined) ?? []).map((d) => ({
        id: d.id as string,
        version: (d.version as string | undefined) ?? '*',
        optional: (d.optional as boolean | undefined) ?? false,
      })),
      capabilities: (req.capabilities as string[] | undefined) ?? [],
    },
    ...(r.plugin_type === 'wasm' || r.plugin_type === 'native' ? { pluginType: r.plugin_type } : {}),
    ...(r.entry_point === undefined ? {} : { entryPoint: r.entry_point }),
    ...(r.abi === undefined ? {} : { abi: r.abi }),
    permissions: {
      storage: (perm.storage as PluginManifest['permissions']['storage']) ?? DEFAULT_PERMISSIONS.storage,
      content: (perm.content as PluginManifest['permissions']['content']) ?? DEFAULT_PERMISSIONS.content,
      events: { emit: events.emit ?? [], subscribe: events.subscribe ?? [] },
      log: (perm.log as boolean | undefined) ?? DEFAULT_PERMISSIONS.log,
      network: (perm.network as boolean | undefined) ?? DEFAULT_PERMISSIONS.network,
      filesystem:
        (perm.filesystem as PluginManifest['permissions']['filesystem']) ?? DEFAULT_PERMISSIONS.filesystem,
    },
    configuration: r.configuration ?? {},
    limits: limitsFromToml(r.limits),
    sandbox: {
      ...(r.sandbox?.mode === undefined ? {} : { mode: r.sandbox.mode }),
      ...(r.sandbox?.runtime === undefined ? {} : { runtime: r.sandbox.runtime }),
      ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
      ...(r.sandbox?.replicas === undefined ? {} : { replicas: r.sandbox.replicas }),
    },
    wasi: {
      args: r.wasi?.args ?? [],
      env: { ...r.wasi?.env },
      ...(r.wasi?.preopen === undefined ? {} : { preopen: r.wasi.preopen }),
    },
  };
}

function pick<K extends string>(source: Record<string, unknown>, ...keys: K[]): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const key of keys) if (typeof source[key] === 'string') out[key] = source[key] as string;
  return out;
}

// --- capped read ---------------------------------------------------------------------------------

class ManifestTooLarge extends Error {
  constructor(readonly size: number) {
    super(`manifest too large: ${size}`);
  }
}

// O_NOFOLLOW: the caller names the real file, so a link here was swapped in after the walk. O_NONBLOCK: a FIFO
// swapped in must not block the host's thread (it is refused below as not a regular file).
const OPEN_FLAGS =
  constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0);

/**
 * Reads at most `maxBytes` of a regular file, without following a link; a larger file (by fstat, or by growing
 * while read) throws ManifestTooLarge.
 */
function readCapped(file: string, maxBytes: number): Buffer {
  const fd = openSync(file, OPEN_FLAGS);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    return readOpened(fd, st.size, maxBytes);
  } finally {
    closeSync(fd);
  }
}

/**
 * One open for both the walk and the read (discovery's inventory, src/discovery/discover.ts): opens `file` as
 * {@link readManifest} does and returns its fstat and, when it is a regular file within `maxBytes` that reads whole
 * within it, its bytes (the bytes readManifest would have read). Undefined when it cannot be opened: the caller then
 * looks with lstat, and readManifest reports whatever is wrong, as without this. Never throws.
 */
export function readManifestOnce(
  file: string,
  maxBytes: number,
): { stats: Stats; bytes?: Buffer } | undefined {
  let fd: number;
  try {
    fd = openSync(file, OPEN_FLAGS);
  } catch {
    return undefined;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size > maxBytes) return { stats };
    try {
      return { stats, bytes: readOpened(fd, stats.size, maxBytes) };
    } catch {
      return { stats }; // grew past the cap, or a read error: readManifest reads it again and says what it finds
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The read loop of {@link readCapped}: `fd` is a regular file that fstat said is `size` bytes (at most the cap). */
function readOpened(fd: number, size: number, maxBytes: number): Buffer {
  if (size > maxBytes) throw new ManifestTooLarge(size);
  let buffer = Buffer.allocUnsafe(size + 1);
  let length = 0;
  for (;;) {
    const want = buffer.length - length;
    const n = readSync(fd, buffer, length, want, null);
    if (n === 0) return buffer.subarray(0, length);
    length += n;
    if (length > maxBytes) throw new ManifestTooLarge(length);
    // A regular file reads short only at its end: no second read just to be told so.
    if (n < want) return buffer.subarray(0, length);
    if (length === buffer.length) {
      // The file grew while we read it; keep reading, still within the cap.
      const grown = Buffer.allocUnsafe(Math.min(length * 2, maxBytes + 1));
      buffer.copy(grown, 0, 0, length);
      buffer = grown;
    }
  }
}

/**
 * SHA-256 in hex: the one-shot `crypto.hash` where this Node has it (20.12 and later; about half the cost of a Hash
 * object for a manifest's few hundred bytes, and discovery hashes every manifest), else a Hash object.
 */
const sha256Hex: (bytes: Buffer) => string =
  typeof hash === 'function'
    ? (bytes) => hash('sha256', bytes, 'hex')
    : (bytes) => createHash('sha256').update(bytes).digest('hex');

function fail(file: string, code: Diagnostic['code'], message: string): ManifestParseResult {
  return { diagnostics: [{ code, severity: 'error', message, file }] };
}

/** Why `[sandbox] replicas` above 1 cannot be had in mode none (the manifest's mode, or the host's for it). */
export function replicasInModeNone(replicas: number): string {
  return `sandbox.replicas = ${replicas} asks for ${replicas} runners of the plugin, and mode none runs it inside the host process (one instance, no runner): set sandbox.mode to "process" or "container", or leave replicas at 1`;
}
