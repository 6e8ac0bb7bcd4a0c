import { type TSchema, Type } from '@sinclair/typebox';

/**
 * The JSON Schema of `plugin.toml`, written with TypeBox so that one definition gives the runtime check
 * (compiled by ajv in parse-manifest.ts) and the published schema (docs/plugin.schema.json, for editors).
 * Defaults are applied in normalize; docs/MANIFEST.md documents every field.
 */

function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

function Table<T extends Parameters<typeof Type.Object>[0]>(properties: T, description?: string) {
  return Type.Object(properties, {
    additionalProperties: false,
    ...(description === undefined ? {} : { description }),
  });
}

const PositiveInt = (maximum: number, description: string) =>
  Type.Integer({ minimum: 1, maximum, description });

export const PLUGIN_ID_PATTERN = '^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$';
const TOPIC_PATTERN = '^[a-z0-9*](?:[a-z0-9._*-]{0,126})?$';
const CAPABILITY_PATTERN = '^[a-z0-9](?:[a-z0-9._:-]{0,126})?$';

export const PLUGIN_TYPES = ['wasm', 'native', 'script'] as const;
export const SANDBOX_MODES = ['none', 'process', 'container'] as const;
export const CONTAINER_RUNTIMES = ['runc', 'runsc'] as const;
export const ACCESS_LEVELS = ['none', 'read', 'readwrite'] as const;
/** The plugin ABIs a WASM module may speak (docs/ABI-wasm.md): reed's own, or Extism's. */
export const WASM_ABIS = ['reed', 'extism'] as const;

export const MetadataSchema = Table({
  id: Type.String({
    pattern: PLUGIN_ID_PATTERN,
    description: 'Unique id: lowercase letters, digits, ".", "_", "-"; 1-128 characters',
  }),
  name: Type.String({ minLength: 1, maxLength: 200 }),
  version: Type.String({ maxLength: 256, description: 'semver' }),
  api_version: Type.String({ maxLength: 256, description: 'semver of the plugin API it was built for' }),
  priority: Type.Optional(Type.Integer({ minimum: -1_000_000, maximum: 1_000_000, default: 100 })),
  description: Type.Optional(Type.String({ maxLength: 4000 })),
  authors: Type.Optional(Type.Array(Type.String({ maxLength: 200 }), { maxItems: 100 })),
  license: Type.Optional(Type.String({ maxLength: 200 })),
  homepage: Type.Optional(Type.String({ maxLength: 2000 })),
});

export const DependencySchema = Table({
  id: Type.String({ pattern: PLUGIN_ID_PATTERN }),
  version: Type.Optional(Type.String({ maxLength: 256, description: 'semver range', default: '*' })),
  optional: Type.Optional(Type.Boolean({ default: false })),
});

export const RequirementsSchema = Table({
  min_reed_version: Type.Optional(Type.String({ maxLength: 256 })),
  dependencies: Type.Optional(Type.Array(DependencySchema, { maxItems: 256 })),
  capabilities: Type.Optional(Type.Array(Type.String({ pattern: CAPABILITY_PATTERN }), { maxItems: 256 })),
});

export const PermissionsSchema = Table({
  storage: Type.Optional(StringEnum(ACCESS_LEVELS)),
  content: Type.Optional(StringEnum(ACCESS_LEVELS)),
  events: Type.Optional(
    Table({
      emit: Type.Optional(Type.Array(Type.String({ pattern: TOPIC_PATTERN }), { maxItems: 256 })),
      subscribe: Type.Optional(Type.Array(Type.String({ pattern: TOPIC_PATTERN }), { maxItems: 256 })),
    }),
  ),
  log: Type.Optional(Type.Boolean()),
  network: Type.Optional(Type.Boolean()),
  filesystem: Type.Optional(StringEnum(ACCESS_LEVELS)),
});

/** Limits a plugin may ask for; each is checked against the host policy's ceiling. */
export const LimitsSchema = Table({
  memory_mb: Type.Optional(PositiveInt(65_536, 'memory cap in MiB')),
  table_elements: Type.Optional(PositiveInt(10_000_000, 'WASM table elements')),
  fuel_per_call: Type.Optional(PositiveInt(Number.MAX_SAFE_INTEGER, 'WASM instruction budget per call')),
  call_timeout_ms: Type.Optional(PositiveInt(3_600_000, 'deadline per call')),
  max_output_bytes: Type.Optional(PositiveInt(2 ** 31, 'output size cap per call')),
  storage_quota_bytes: Type.Optional(PositiveInt(Number.MAX_SAFE_INTEGER, 'storage quota')),
  content_quota_bytes: Type.Optional(
    PositiveInt(Number.MAX_SAFE_INTEGER, 'content quota (bytes of type and data)'),
  ),
  content_quota_items: Type.Optional(PositiveInt(Number.MAX_SAFE_INTEGER, 'content quota (items)')),
  log_line_bytes: Type.Optional(PositiveInt(1_048_576, 'longest log line kept')),
  log_lines_per_second: Type.Optional(PositiveInt(1_000_000, 'log rate cap')),
  cpus: Type.Optional(
    Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'CPU quota (process and container)' }),
  ),
  pids: Type.Optional(
    PositiveInt(1_000_000, 'process and thread count cap (process, at least 48 for Node; container)'),
  ),
  tmpfs_mb: Type.Optional(PositiveInt(65_536, '/tmp and /dev/shm size (process and container)')),
  disk_mb: Type.Optional(PositiveInt(1_048_576, 'data directory quota in MiB (permissions.filesystem)')),
  max_files: Type.Optional(
    PositiveInt(
      100_000_000,
      'data directory quota in entries: files, directories, links (permissions.filesystem)',
    ),
  ),
  extism_var_bytes: Type.Optional(
    PositiveInt(1_073_741_824, 'Extism plugins: bytes of variables an instance may hold'),
  ),
});

export const SandboxSchema = Table({
  mode: Type.Optional(StringEnum(SANDBOX_MODES)),
  runtime: Type.Optional(StringEnum(CONTAINER_RUNTIMES)),
  idle_timeout: Type.Optional(
    Type.String({
      maxLength: 32,
      description:
        'scale to zero: stop the sandbox after this long without a call ("200ms", "30s", "5m", "1h") and start it again on the next; "off": never. Default: the host\'s [sandbox] idle_timeout',
    }),
  ),
  replicas: Type.Optional(
    PositiveInt(
      16,
      'runners of the plugin, each with its own supervisor; calls go to the ready one with the fewest in flight (process, container; not none). Default 1',
    ),
  ),
});

/** An absolute, normalised guest path: "/" or "/a/b" of plain names (no "." or ".." component, no empty one). */
export const PREOPEN_PATTERN =
  '^/(?:(?!\\.\\.?(?:/|$))[A-Za-z0-9._-]+(?:/(?!\\.\\.?(?:/|$))[A-Za-z0-9._-]+)*)?$';

export const WasiSchema = Table({
  args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
  env: Type.Optional(
    Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String({ maxLength: 32_768 })),
  ),
  /** The name the data directory is preopened under (permissions.filesystem): "/" or "/a/b", no "." or "..". */
  preopen: Type.Optional(Type.String({ pattern: PREOPEN_PATTERN, maxLength: 256 })),
});

export const ManifestSchema = Table({
  plugin_type: Type.Optional(StringEnum(PLUGIN_TYPES)),
  entry_point: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  abi: Type.Optional(
    StringEnum(WASM_ABIS, { description: 'the ABI a WASM module speaks; default: detected' }),
  ),
  metadata: MetadataSchema,
  requirements: Type.Optional(RequirementsSchema),
  permissions: Type.Optional(PermissionsSchema),
  configuration: Type.Optional(Type.Object({}, { additionalProperties: true })),
  limits: Type.Optional(LimitsSchema),
  sandbox: Type.Optional(SandboxSchema),
  wasi: Type.Optional(WasiSchema),
});

export type ManifestSchemaType = typeof ManifestSchema;
export type AnySchema = TSchema;
