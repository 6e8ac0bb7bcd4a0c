import { Type } from '@sinclair/typebox';
import { MAX_REPLICAS } from '../backends/replica-set.js';
import { ACCESS_LEVELS, LimitsSchema, SANDBOX_MODES } from '../manifest/schema.js';

/** The schema of the host's `reed.toml`. README.md ("Configuration") documents every key and default. */

const Enum = <const T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });
const Strict = <T extends Parameters<typeof Type.Object>[0]>(properties: T) =>
  Type.Object(properties, { additionalProperties: false });
const Count = (max: number) => Type.Optional(Type.Integer({ minimum: 1, maximum: max }));

/**
 * A tenant's quotas (src/tenant-quotas.ts, docs/TENANTS.md): reed.toml's `[tenants.<id>.quotas]`, tenant.json and
 * the admin API's body share this schema. Every key optional; an absent key is no limit.
 */
export const TenantQuotasSchema = Strict({
  max_concurrent_calls: Count(1_000_000),
  calls_per_second: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000_000 })),
  calls_burst: Count(1_000_000_000),
  max_plugins: Count(100_000),
  events_per_second: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000_000 })),
  storage_bytes: Count(Number.MAX_SAFE_INTEGER),
  storage_keys: Count(Number.MAX_SAFE_INTEGER),
  filesystem_bytes: Count(Number.MAX_SAFE_INTEGER),
  memory_mb: Count(16_777_216),
  cpu_weight: Count(10_000),
  fuel_per_second: Count(Number.MAX_SAFE_INTEGER),
  lifecycle_per_second: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 })),
});

/** `[tenants.<id>]`: its plugin directories (relative to reed.toml) and its quotas. */
export const TenantConfigSchema = Strict({
  plugin_dirs: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
  quotas: Type.Optional(TenantQuotasSchema),
});

export const HostConfigSchema = Strict({
  plugin_dirs: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
  default_search_paths: Type.Optional(Type.Boolean()),
  reed_version: Type.Optional(Type.String()),
  capabilities: Type.Optional(Type.Array(Type.String(), { maxItems: 1024 })),
  cache_dir: Type.Optional(Type.String({ minLength: 1 })),
  data_dir: Type.Optional(Type.String({ minLength: 1 })),
  runtime_dir: Type.Optional(Type.String({ minLength: 1 })),
  // Tenants (docs/TENANTS.md): ids checked against TENANT_ID_PATTERN in host-config.ts, to name the one that is wrong.
  tenants: Type.Optional(Type.Record(Type.String(), TenantConfigSchema, { maxProperties: 10_000 })),
  sandbox: Type.Optional(
    Strict({
      mode: Type.Optional(Enum(SANDBOX_MODES)),
      runtime: Type.Optional(Enum(['runc', 'runsc'] as const)),
      // "START-END": process mode's runner uids (host-config.ts checks the range). runner_uid and runner_gid are
      // refused there with a message naming runner_uids (one uid for every runner let them reach each other).
      runner_uids: Type.Optional(Type.String({ minLength: 3, maxLength: 32 })),
      runner_uid: Type.Optional(Type.Unknown()),
      runner_gid: Type.Optional(Type.Unknown()),
      // Scale to zero's default for every plugin ("5m", "off"; src/manifest/idle-timeout.ts checks the form).
      idle_timeout: Type.Optional(Type.String({ maxLength: 32 })),
      // Warm pools (src/backends/pool/, docs/ARCHITECTURE.md "Warm pools"): runners kept ready per backend.
      pool: Type.Optional(
        Strict({
          process: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000 })),
          // Container mode, per runtime (src/backends/container/container-pool.ts).
          runc: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000 })),
          runsc: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000 })),
          // "10m", "30s", "1h", "500ms", or milliseconds.
          ttl: Type.Optional(Type.Union([Type.String({ maxLength: 16 }), Type.Integer({ minimum: 1 })])),
        }),
      ),
    }),
  ),
  wasm: Type.Optional(
    Strict({
      max_module_bytes: Count(Number.MAX_SAFE_INTEGER),
      fuel: Type.Optional(Type.Boolean()),
      // What a module may contain, and the bounds of the worker that prepares it (docs/ABI-wasm.md).
      max_functions: Count(1_000_000),
      max_function_bytes: Count(7_654_321),
      max_code_bytes: Count(Number.MAX_SAFE_INTEGER),
      max_function_locals: Count(50_000),
      max_exports: Count(100_000),
      max_imports: Count(100_000),
      max_globals: Count(1_000_000),
      max_tags: Count(1_000_000),
      prepare_timeout_ms: Count(3_600_000),
      prepare_memory_mb: Count(65_536),
    }),
  ),
  cache: Type.Optional(
    Strict({ max_bytes: Count(Number.MAX_SAFE_INTEGER), enabled: Type.Optional(Type.Boolean()) }),
  ),
  limits: Type.Optional(LimitsSchema),
  files: Type.Optional(
    Strict({
      max_manifest_bytes: Count(16 * 1024 * 1024),
      max_file_bytes: Count(Number.MAX_SAFE_INTEGER),
      max_plugin_bytes: Count(Number.MAX_SAFE_INTEGER),
      max_files: Count(10_000_000),
      max_depth: Count(1_000),
    }),
  ),
  // Process and container modes: the crash breaker (src/backends/supervisor.ts, Supervision).
  supervision: Type.Optional(
    Strict({
      max_crashes: Count(1_000),
      crash_window_ms: Count(86_400_000),
      breaker_cooldown_ms: Count(86_400_000),
      breaker_cooldown_max_ms: Count(86_400_000),
    }),
  ),
  // Upgrades while serving (src/host/plugin-set.ts): the probation window (0: none) and the drain's bound; installs
  // through the API: the archives taken in at once, host-wide, and how many more may wait (src/host/install-slots.ts).
  lifecycle: Type.Optional(
    Strict({
      probation_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
      drain_timeout_ms: Count(86_400_000),
      max_concurrent_installs: Count(1_024),
      install_queue: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    }),
  ),
  signatures: Type.Optional(
    Strict({
      require: Type.Optional(Enum(['none', 'native', 'all'] as const)),
      trusted_keys: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 256 })),
    }),
  ),
  policy: Type.Optional(
    Strict({
      allow_native_in_process: Type.Optional(Type.Boolean()),
      allowed_sandbox_modes: Type.Optional(Type.Array(Enum(SANDBOX_MODES), { minItems: 1, maxItems: 3 })),
      max_replicas: Count(MAX_REPLICAS),
      permissions: Type.Optional(
        Strict({
          storage: Type.Optional(Enum(ACCESS_LEVELS)),
          content: Type.Optional(Enum(ACCESS_LEVELS)),
          events: Type.Optional(
            Strict({
              emit: Type.Optional(Type.Array(Type.String())),
              subscribe: Type.Optional(Type.Array(Type.String())),
            }),
          ),
          log: Type.Optional(Type.Boolean()),
          network: Type.Optional(Type.Boolean()),
          filesystem: Type.Optional(Enum(ACCESS_LEVELS)),
        }),
      ),
      limits: Type.Optional(LimitsSchema),
    }),
  ),
});
