// Longer than most files (about 380 lines) on purpose: reed.toml has one reader, so every key's default and check
// sits here beside the HostConfig type it fills; the shape of the file itself is config-schema.ts.
import { existsSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Static } from '@sinclair/typebox';
import semver from 'semver';
import type { PoolSettings } from '../backends/backend.js';
import { CONTAINER_USER } from '../backends/container/container-spec.js';
import { parseTtl } from '../backends/pool/warm-pool.js';
import {
  DEFAULT_RUNNER_UIDS,
  parseUidRange,
  RESERVED_UIDS,
  type UidRange,
  uidRangeProblem,
} from '../backends/shared/uid-pool.js';
import { DEFAULT_SUPERVISION, type Supervision } from '../backends/supervisor.js';
import { type Diagnostic, formatDiagnostic } from '../diagnostics.js';
import { defaultSearchPaths } from '../discovery/discover.js';
import { DEFAULT_FILE_LIMITS, type FileLimits } from '../discovery/plugin-inventory.js';
import { ReedError } from '../errors.js';
import { parseIdleTimeout } from '../manifest/idle-timeout.js';
import {
  DEFAULT_LIMIT_CEILINGS,
  DEFAULT_LIMITS,
  effectiveLimits,
  LIMIT_FIELDS,
  limitsFromToml,
  type ResolvedLimits,
} from '../manifest/limits.js';
import { SANDBOX_MODES } from '../manifest/schema.js';
import type { PluginPermissions, SandboxMode } from '../manifest/types.js';
import {
  DEFAULT_MAX_MODULE_BYTES,
  DEFAULT_PREPARE_MEMORY_MB,
  DEFAULT_PREPARE_TIMEOUT_MS,
} from '../runtime/wasm/compile-wasm.js';
import { DEFAULT_WASM_MODULE_LIMITS, type WasmModuleLimits } from '../runtime/wasm/module-limits.js';
import { compileSchema, schemaDiagnostics } from '../schema-check.js';
import { readTrustedKey } from '../signing/signature.js';
import { MIN_FILESYSTEM_BYTES, TENANT_QUOTA_KEYS, type TenantQuotas } from '../tenant-quotas.js';
import { parseToml, type TomlSyntaxError } from '../toml.js';
import { DEFAULT_MAX_REPLICAS, type HostPolicy, type ValidationContext } from '../validation/context.js';
import { LOADER_VERSION, PLUGIN_API_VERSION } from '../version.js';
import { HostConfigSchema } from './config-schema.js';
import { DEFAULT_INSTALL_QUEUE, DEFAULT_MAX_CONCURRENT_INSTALLS } from './install-slots.js';

export const CONFIG_FILE = 'reed.toml';

/** Host API services a plugin may list in `requirements.capabilities` unless reed.toml says otherwise. */
export const DEFAULT_CAPABILITIES: readonly string[] = ['log', 'storage', 'content', 'events', 'config'];

export const DEFAULT_POLICY_PERMISSIONS: Readonly<PluginPermissions> = Object.freeze({
  storage: 'readwrite',
  content: 'readwrite',
  events: { emit: ['*'], subscribe: ['*'] },
  log: true,
  network: false,
  filesystem: 'none',
});

/** The host's configuration, every default applied and every path absolute. */
export interface HostConfig {
  /** The reed.toml this came from, if any. */
  file?: string;
  pluginDirs: string[];
  /** Whether `~/.reed/plugins` and `/usr/local/share/reed/plugins` are searched after `pluginDirs`. */
  defaultSearchPaths: boolean;
  /** Every directory searched, highest precedence first. */
  searchPaths: string[];
  apiVersion: string;
  reedVersion: string;
  capabilities: string[];
  sandboxMode: SandboxMode;
  /** Container mode: the runtime for plugins whose manifest does not name one. Default runc. */
  containerRuntime: 'runc' | 'runsc';
  /**
   * `[sandbox] idle_timeout`: scale to zero's default, in ms, for plugins whose manifest sets none (0: off, the
   * default). A plugin idle that long has its sandbox stopped, and started again on its next call.
   */
  idleTimeoutMs: number;
  limits: ResolvedLimits;
  fileLimits: FileLimits;
  policy: HostPolicy;
  cacheDir: string;
  /** Compile cache: whether it is used, and its size bound. */
  cache: { enabled: boolean; maxBytes: number };
  /** Which plugins need a signature, and the keys trusted to sign them (raw Ed25519 public keys). */
  signatures: { require: 'none' | 'native' | 'all'; trustedKeys: Buffer[] };
  wasm: {
    maxModuleBytes: number;
    fuel: boolean;
    /** What a module may contain (`max_functions`, ...), checked before it is prepared and by validate. */
    limits: WasmModuleLimits;
    prepareTimeoutMs: number;
    prepareMemoryMb: number;
  };
  dataDir: string;
  runtimeDir: string;
  /**
   * Process mode, host running as root: the uids runners run as, one per running sandbox (`[sandbox] runner_uids`,
   * default 600000-699999). Undefined when the host is not root: runners then keep the host's uid.
   */
  runnerUids?: UidRange;
  /**
   * `[sandbox.pool]`: warm runners each backend keeps ready (docs/ARCHITECTURE.md, "Warm pools"). Off by default
   * (sizes 0); `limits` are the host's `[limits]`, which warm runners start with.
   */
  pool: PoolSettings;
  /** `[supervision]`: the keys set (the breaker's); PluginHost lays its `supervision` option over them. */
  supervision: Partial<Supervision>;
  /** `[lifecycle]`: upgrades while serving, and installs through the API. */
  lifecycle: {
    /** How long a new version is on probation: its breaker opening then restores the previous one. 0: never. */
    probationMs: number;
    /** How long an old version may take to finish its calls in flight before it is stopped all the same. */
    drainTimeoutMs: number;
    /** Plugin archives taken in (extracted, scanned, kept) at once, host-wide: every tenant's (InstallSlots). */
    maxConcurrentInstalls: number;
    /** Installs that may wait for one of those slots; one more is refused with `install_busy`. */
    installQueue: number;
  };
  /**
   * `[tenants.<id>]` (docs/TENANTS.md): the tenants reed.toml declares, plugin_dirs absolute. `default` may carry
   * quotas only (the default tenant's plugin directories are the top-level plugin_dirs). Empty when none.
   */
  tenants: Record<string, { pluginDirs: string[]; quotas: TenantQuotas }>;
  /** Non-fatal findings, e.g. unknown keys. */
  warnings: Diagnostic[];
}

export const DEFAULT_LIFECYCLE: Readonly<HostConfig['lifecycle']> = Object.freeze({
  probationMs: 30_000,
  drainTimeoutMs: 60_000,
  maxConcurrentInstalls: DEFAULT_MAX_CONCURRENT_INSTALLS,
  installQueue: DEFAULT_INSTALL_QUEUE,
});

/** What the command line (or an embedding application) sets over reed.toml. */
export interface HostConfigOverrides {
  /** Replaces `plugin_dirs`. */
  pluginDirs?: string[];
  defaultSearchPaths?: boolean;
  sandboxMode?: SandboxMode;
}

export interface LoadHostConfigOptions {
  /** reed.toml to read. Default: `$REED_CONFIG`, else `./reed.toml` when it exists, else built-in defaults. */
  file?: string;
  /** Default: `process.cwd()`. */
  cwd?: string;
  /** Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Default: `os.homedir()`. */
  home?: string;
  overrides?: HostConfigOverrides;
}

/** Compiled at the first reed.toml read (ajv's compile is tens of ms), not when a module imports this one. */
let validateConfig: ReturnType<typeof compileSchema> | undefined;

/** Reads and checks reed.toml, applies overrides and defaults. Throws `config_unreadable` or `config_invalid`. */
export function loadHostConfig(options: LoadHostConfigOptions = {}): HostConfig {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const home = options.home ?? homedir();
  let file = options.file ?? env.REED_CONFIG;
  if (file === undefined && existsSync(join(cwd, CONFIG_FILE))) file = CONFIG_FILE;
  const path = file === undefined ? undefined : resolve(cwd, file);

  let raw: Record<string, unknown> = {};
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new ReedError(
        'config_unreadable',
        `cannot read host configuration ${path}: ${(error as Error).message}`,
        {
          file: path,
          cause: error,
        },
      );
    }
    try {
      raw = parseToml(text);
    } catch (error) {
      const e = error as TomlSyntaxError;
      const where = e.line === undefined ? '' : `:${e.line}:${e.column ?? 1}`;
      throw new ReedError('config_invalid', `${path}${where}: TOML syntax error: ${e.message}`, {
        file: path,
        cause: error,
      });
    }
  }
  validateConfig ??= compileSchema(HostConfigSchema);
  const found = schemaDiagnostics(validateConfig, raw, (field) => ({
    ...(path === undefined ? {} : { file: path }),
    field,
  }));
  const errors = found.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    throw new ReedError(
      'config_invalid',
      `invalid host configuration:\n${errors.map(formatDiagnostic).join('\n')}`,
      {
        ...(path === undefined ? {} : { file: path }),
        ...(errors[0]?.field === undefined ? {} : { field: errors[0].field }),
      },
    );
  }
  return resolveConfig(raw as RawConfig, {
    base: path === undefined ? cwd : dirname(path),
    cwd,
    env,
    home,
    overrides: options.overrides ?? {},
    warnings: found,
    ...(path === undefined ? {} : { file: path }),
  });
}

/** reed.toml as the schema has checked it: the schema is the one statement of its shape. */
type RawConfig = Static<typeof HostConfigSchema>;

type Invalid = (field: string, message: string) => never;

interface ResolveContext {
  base: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  home: string;
  overrides: HostConfigOverrides;
  warnings: Diagnostic[];
  file?: string;
}

// Checks run in this order (the first problem is the one reported): reed_version, limits against their
// ceilings, sandbox mode against the policy, runner uids, trusted keys.
function resolveConfig(raw: RawConfig, ctx: ResolveContext): HostConfig {
  const invalid: Invalid = (field, message) => {
    throw new ReedError('config_invalid', `${ctx.file ?? 'host configuration'}: \`${field}\` ${message}`, {
      ...(ctx.file === undefined ? {} : { file: ctx.file }),
      field,
    });
  };
  const reedVersion = raw.reed_version ?? LOADER_VERSION;
  if (semver.valid(reedVersion) === null)
    invalid('reed_version', `must be a semver version, found "${reedVersion}"`);

  const pluginDirs =
    ctx.overrides.pluginDirs?.map((d) => resolve(ctx.cwd, d)) ??
    (raw.plugin_dirs ?? ['plugins']).map((d) => resolve(ctx.base, d));
  const useDefaults = ctx.overrides.defaultSearchPaths ?? raw.default_search_paths ?? true;
  const { limits, ceilings } = resolveLimits(raw, invalid);
  const sandboxMode = ctx.overrides.sandboxMode ?? raw.sandbox?.mode ?? 'none';
  const policy = resolvePolicy(raw, ceilings);
  if (!policy.allowedSandboxModes.includes(sandboxMode)) {
    invalid('sandbox.mode', `"${sandboxMode}" is not among policy.allowed_sandbox_modes`);
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const runnerUids = resolveRunnerUids(raw.sandbox ?? {}, invalid);
  const idle =
    raw.sandbox?.idle_timeout === undefined ? { ms: 0 } : parseIdleTimeout(raw.sandbox.idle_timeout);
  if ('problem' in idle) invalid('sandbox.idle_timeout', idle.problem);
  return {
    ...(ctx.file === undefined ? {} : { file: ctx.file }),
    pluginDirs,
    defaultSearchPaths: useDefaults,
    searchPaths: [...pluginDirs, ...(useDefaults ? defaultSearchPaths(ctx.home) : [])],
    apiVersion: PLUGIN_API_VERSION,
    reedVersion,
    capabilities: raw.capabilities ?? [...DEFAULT_CAPABILITIES],
    sandboxMode,
    containerRuntime: raw.sandbox?.runtime ?? 'runc',
    idleTimeoutMs: 'ms' in idle ? idle.ms : 0,
    limits,
    fileLimits: resolveFileLimits(raw.files ?? {}),
    policy,
    cache: { enabled: raw.cache?.enabled ?? true, maxBytes: raw.cache?.max_bytes ?? 512 * 1024 * 1024 },
    signatures: {
      require: raw.signatures?.require ?? 'native',
      trustedKeys: (raw.signatures?.trusted_keys ?? []).map((spec, i) => {
        try {
          return readTrustedKey(spec, ctx.base);
        } catch (error) {
          return invalid(`signatures.trusted_keys[${i}]`, (error as Error).message);
        }
      }),
    },
    wasm: resolveWasm(raw.wasm ?? {}),
    supervision: resolveSupervision(raw.supervision ?? {}, invalid),
    pool: resolvePool(raw.sandbox?.pool ?? {}, limits, invalid),
    lifecycle: {
      probationMs: raw.lifecycle?.probation_ms ?? DEFAULT_LIFECYCLE.probationMs,
      drainTimeoutMs: raw.lifecycle?.drain_timeout_ms ?? DEFAULT_LIFECYCLE.drainTimeoutMs,
      maxConcurrentInstalls:
        raw.lifecycle?.max_concurrent_installs ?? DEFAULT_LIFECYCLE.maxConcurrentInstalls,
      installQueue: raw.lifecycle?.install_queue ?? DEFAULT_LIFECYCLE.installQueue,
    },
    ...resolveDirs(raw, ctx, uid),
    tenants: resolveTenants(raw, ctx, invalid),
    warnings: ctx.warnings,
    ...(uid === 0 ? { runnerUids } : {}),
  };
}

/** `[limits]` over the defaults and `[policy.limits]` over the default ceilings; no limit may pass its ceiling. */
function resolveLimits(
  raw: RawConfig,
  invalid: Invalid,
): { limits: ResolvedLimits; ceilings: ResolvedLimits } {
  const limits = effectiveLimits(limitsFromToml(raw.limits), DEFAULT_LIMITS);
  const ceilings = effectiveLimits(limitsFromToml(raw.policy?.limits), DEFAULT_LIMIT_CEILINGS);
  for (const key of Object.keys(limits) as (keyof ResolvedLimits)[]) {
    if (limits[key] > ceilings[key]) {
      const name = LIMIT_FIELDS[key];
      invalid(
        `limits.${name}`,
        `is ${limits[key]}, above its ceiling policy.limits.${name} = ${ceilings[key]}`,
      );
    }
  }
  return { limits, ceilings };
}

function resolvePolicy(raw: RawConfig, limitCeilings: ResolvedLimits): HostPolicy {
  const p = raw.policy?.permissions ?? {};
  const d = DEFAULT_POLICY_PERMISSIONS;
  return {
    permissions: {
      storage: p.storage ?? d.storage,
      content: p.content ?? d.content,
      events: {
        emit: p.events?.emit ?? d.events.emit,
        subscribe: p.events?.subscribe ?? d.events.subscribe,
      },
      log: p.log ?? d.log,
      network: p.network ?? d.network,
      filesystem: p.filesystem ?? d.filesystem,
    },
    allowedSandboxModes: raw.policy?.allowed_sandbox_modes ?? [...SANDBOX_MODES],
    limitCeilings,
    allowNativeInProcess: raw.policy?.allow_native_in_process ?? false,
    maxReplicas: raw.policy?.max_replicas ?? DEFAULT_MAX_REPLICAS,
  };
}

function resolveFileLimits(files: NonNullable<RawConfig['files']>): FileLimits {
  return {
    maxManifestBytes: files.max_manifest_bytes ?? DEFAULT_FILE_LIMITS.maxManifestBytes,
    maxFileBytes: files.max_file_bytes ?? DEFAULT_FILE_LIMITS.maxFileBytes,
    maxPluginBytes: files.max_plugin_bytes ?? DEFAULT_FILE_LIMITS.maxPluginBytes,
    maxFiles: files.max_files ?? DEFAULT_FILE_LIMITS.maxFiles,
    maxDepth: files.max_depth ?? DEFAULT_FILE_LIMITS.maxDepth,
  };
}

function resolveWasm(wasm: NonNullable<RawConfig['wasm']>): HostConfig['wasm'] {
  return {
    maxModuleBytes: wasm.max_module_bytes ?? DEFAULT_MAX_MODULE_BYTES,
    fuel: wasm.fuel ?? true,
    limits: {
      maxFunctions: wasm.max_functions ?? DEFAULT_WASM_MODULE_LIMITS.maxFunctions,
      maxFunctionBytes: wasm.max_function_bytes ?? DEFAULT_WASM_MODULE_LIMITS.maxFunctionBytes,
      maxCodeBytes: wasm.max_code_bytes ?? DEFAULT_WASM_MODULE_LIMITS.maxCodeBytes,
      maxFunctionLocals: wasm.max_function_locals ?? DEFAULT_WASM_MODULE_LIMITS.maxFunctionLocals,
      maxExports: wasm.max_exports ?? DEFAULT_WASM_MODULE_LIMITS.maxExports,
      maxImports: wasm.max_imports ?? DEFAULT_WASM_MODULE_LIMITS.maxImports,
      maxGlobals: wasm.max_globals ?? DEFAULT_WASM_MODULE_LIMITS.maxGlobals,
      maxTags: wasm.max_tags ?? DEFAULT_WASM_MODULE_LIMITS.maxTags,
    },
    prepareTimeoutMs: wasm.prepare_timeout_ms ?? DEFAULT_PREPARE_TIMEOUT_MS,
    prepareMemoryMb: wasm.prepare_memory_mb ?? DEFAULT_PREPARE_MEMORY_MB,
  };
}

/** `[supervision]`: only the keys given, so that the supervisor's defaults stay in one place. */
/** `[sandbox.pool]`: sizes (default 0: no pool) and the TTL (default 10 minutes). */
function resolvePool(
  pool: NonNullable<NonNullable<RawConfig['sandbox']>['pool']>,
  limits: ResolvedLimits,
  invalid: Invalid,
): PoolSettings {
  let ttlMs = DEFAULT_POOL_TTL_MS;
  if (pool.ttl !== undefined) {
    const parsed = parseTtl(pool.ttl);
    if (parsed === undefined)
      invalid(
        'sandbox.pool.ttl',
        `must be a duration such as "10m", "30s" or "1h", found ${JSON.stringify(pool.ttl)}`,
      );
    ttlMs = parsed;
  }
  return {
    process: pool.process ?? 0,
    container: { runc: pool.runc ?? 0, runsc: pool.runsc ?? 0 },
    ttlMs,
    limits,
  };
}

/** A warm runner lives this long before it is replaced (`[sandbox.pool] ttl`). */
export const DEFAULT_POOL_TTL_MS = 10 * 60_000;

function resolveSupervision(
  raw: NonNullable<RawConfig['supervision']>,
  invalid: Invalid,
): Partial<Supervision> {
  const cooldown = raw.breaker_cooldown_ms ?? DEFAULT_SUPERVISION.breakerCooldownMs;
  const cap = raw.breaker_cooldown_max_ms ?? DEFAULT_SUPERVISION.breakerCooldownMaxMs;
  if (cap < cooldown)
    invalid('supervision.breaker_cooldown_max_ms', `is ${cap}, below breaker_cooldown_ms (${cooldown})`);
  return {
    ...(raw.max_crashes === undefined ? {} : { maxCrashes: raw.max_crashes }),
    ...(raw.crash_window_ms === undefined ? {} : { crashWindowMs: raw.crash_window_ms }),
    ...(raw.breaker_cooldown_ms === undefined ? {} : { breakerCooldownMs: raw.breaker_cooldown_ms }),
    ...(raw.breaker_cooldown_max_ms === undefined
      ? {}
      : { breakerCooldownMaxMs: raw.breaker_cooldown_max_ms }),
  };
}

/** A tenant's id: TENANT_ID_PATTERN of src/tenants/tenant.ts, which this layer cannot import (unit/tenants-config keeps them equal). */
export const TENANT_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** `[tenants.<id>]`: ids checked, plugin_dirs resolved against reed.toml's directory; `default` takes quotas only. */
function resolveTenants(raw: RawConfig, ctx: ResolveContext, invalid: Invalid): HostConfig['tenants'] {
  const tenants: HostConfig['tenants'] = {};
  for (const [id, t] of Object.entries(raw.tenants ?? {})) {
    if (!TENANT_ID.test(id))
      invalid(
        `tenants.${id}`,
        'is not a valid tenant id: lowercase letters, digits and "-", starting with a letter or digit, at most 63 characters',
      );
    if (id === 'default' && t.plugin_dirs !== undefined)
      invalid(
        'tenants.default.plugin_dirs',
        'cannot be set: the default tenant\u2019s plugin directories are the top-level plugin_dirs',
      );
    for (const key of Object.keys(t))
      if (key !== 'plugin_dirs' && key !== 'quotas')
        invalid(`tenants.${id}.${key}`, 'is not a tenant key (plugin_dirs, [quotas])');
    // An unknown key elsewhere in reed.toml is a warning; here a misspelt quota would be no limit at all.
    for (const key of Object.keys(t.quotas ?? {}))
      if (!(TENANT_QUOTA_KEYS as readonly string[]).includes(key))
        invalid(`tenants.${id}.quotas.${key}`, `is not a quota (${TENANT_QUOTA_KEYS.join(', ')})`);
    const fsBytes = t.quotas?.filesystem_bytes;
    if (fsBytes !== undefined && fsBytes < MIN_FILESYSTEM_BYTES)
      invalid(
        `tenants.${id}.quotas.filesystem_bytes`,
        `is below the smallest tenant file system (${MIN_FILESYSTEM_BYTES} bytes)`,
      );
    const quotas = { ...(t.quotas ?? {}) };
    if (quotas.calls_burst !== undefined && quotas.calls_per_second === undefined)
      invalid(`tenants.${id}.quotas.calls_burst`, 'needs calls_per_second (the rate that refills the burst)');
    tenants[id] = { pluginDirs: (t.plugin_dirs ?? []).map((d) => resolve(ctx.base, d)), quotas };
  }
  return tenants;
}

/** A root host's data_dir unless reed.toml or XDG_DATA_HOME says otherwise. */
export const ROOT_DATA_DIR = '/var/lib/reed';

/**
 * cache_dir, data_dir and runtime_dir, relative to reed.toml, else from the XDG variables (data_dir: ROOT_DATA_DIR
 * for a root host without XDG_DATA_HOME).
 */
function resolveDirs(
  raw: RawConfig,
  ctx: ResolveContext,
  uid: number,
): Pick<HostConfig, 'cacheDir' | 'dataDir' | 'runtimeDir'> {
  const xdg = (name: string, fallback: string) => ctx.env[name] ?? join(ctx.home, fallback);
  const runtimeDir =
    raw.runtime_dir !== undefined
      ? resolve(ctx.base, raw.runtime_dir)
      : ctx.env.XDG_RUNTIME_DIR !== undefined
        ? join(ctx.env.XDG_RUNTIME_DIR, 'reed')
        : join(tmpdir(), `reed-${uid}`);
  return {
    cacheDir:
      raw.cache_dir === undefined
        ? join(xdg('XDG_CACHE_HOME', '.cache'), 'reed')
        : resolve(ctx.base, raw.cache_dir),
    dataDir:
      raw.data_dir !== undefined
        ? resolve(ctx.base, raw.data_dir)
        : uid === 0 && ctx.env.XDG_DATA_HOME === undefined
          ? // A root host's plugins' directories are bound into runners as their own uids, and bubblewrap checks
            // the path as that uid: root's home (0700) cannot hold them. /var/lib is where a system service's
            // state belongs anyway.
            ROOT_DATA_DIR
          : join(xdg('XDG_DATA_HOME', '.local/share'), 'reed'),
    runtimeDir,
  };
}

/**
 * `[sandbox] runner_uids = "START-END"`, checked: never root, never 65534 (nobody, the user every container
 * runs as: a process-mode runner must not share it with gVisor's or runc's processes), never reversed.
 * The old `runner_uid`/`runner_gid` gave every runner one uid, which let runners signal, trace and read each
 * other: refused, naming the replacement.
 */
function resolveRunnerUids(sandbox: NonNullable<RawConfig['sandbox']>, invalid: Invalid): UidRange {
  for (const old of ['runner_uid', 'runner_gid'] as const) {
    if (sandbox[old] !== undefined)
      invalid(
        `sandbox.${old}`,
        'is no longer supported: one uid shared by every runner lets runners reach each other. Set runner_uids = "START-END" instead (a range of unused uids; each running sandbox gets one of its own; default "600000-699999")',
      );
  }
  if (sandbox.runner_uids === undefined) return { ...DEFAULT_RUNNER_UIDS };
  const range = parseUidRange(sandbox.runner_uids);
  if (range === undefined)
    return invalid(
      'sandbox.runner_uids',
      `must be "START-END" (e.g. "600000-699999"), found "${sandbox.runner_uids}"`,
    );
  const problem = uidRangeProblem(range, [...RESERVED_UIDS, CONTAINER_USER.uid]);
  if (problem !== undefined) return invalid('sandbox.runner_uids', `"${sandbox.runner_uids}" ${problem}`);
  return range;
}

/** The seed's ValidationContext for this host configuration. */
export function validationContext(
  config: HostConfig,
  loadedPlugins: ValidationContext['loadedPlugins'] = [],
): ValidationContext {
  return {
    apiVersion: config.apiVersion,
    reedVersion: config.reedVersion,
    loadedPlugins,
    systemCapabilities: config.capabilities,
    policy: config.policy,
    fileLimits: config.fileLimits,
  };
}
