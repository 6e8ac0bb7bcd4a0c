import { type TSchema, Type } from '@sinclair/typebox';

/**
 * The serve API's request and answer schemas (TypeBox): fastify validates the requests' parameters against them
 * (a failure is `api_bad_request`), and @fastify/swagger writes them into the OpenAPI document served at
 * `GET /v1/openapi.json`. Answers are written by the server itself (src/server/api-server.ts, `send`), so that
 * nothing a plugin put in an answer can break its JSON; test/integration/serve-openapi.test.ts checks real answers
 * against these schemas.
 */

const Problem = Type.Object({ code: Type.String(), message: Type.String() });

export const ErrorBody = Type.Object(
  {
    ok: Type.Literal(false),
    error: Type.Object(
      {
        code: Type.String({ description: 'a stable code of docs/CODES.md' }),
        message: Type.String(),
        pluginId: Type.Optional(Type.String()),
        file: Type.Optional(Type.String()),
        field: Type.Optional(Type.String()),
        details: Type.Optional(Type.Object({}, { additionalProperties: true })),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'Error', additionalProperties: false },
);

export const PluginStatusSchema = Type.Object(
  {
    id: Type.String(),
    version: Type.String(),
    type: Type.Optional(Type.Union([Type.Literal('wasm'), Type.Literal('native')])),
    mode: Type.Union([Type.Literal('none'), Type.Literal('process'), Type.Literal('container')]),
    state: Type.Union(
      ['ready', 'starting', 'restarting', 'idle', 'draining', 'failed', 'stopped'].map((s) =>
        Type.Literal(s),
      ),
    ),
    error: Type.Optional(Problem),
    crashes: Type.Integer({ minimum: 0 }),
    lastError: Type.Optional(Problem),
    retryAt: Type.Optional(Type.String({ format: 'date-time' })),
    replicas: Type.Optional(
      Type.Object(
        { total: Type.Integer({ minimum: 2 }), ready: Type.Integer({ minimum: 0 }) },
        {
          description: '[sandbox] replicas above 1: how many runners the plugin has, and how many are ready',
        },
      ),
    ),
    upgrading: Type.Optional(Type.String()),
    draining: Type.Optional(
      Type.Array(Type.Object({ version: Type.String(), inFlight: Type.Integer({ minimum: 0 }) })),
    ),
    probation: Type.Optional(
      Type.Object({ previousVersion: Type.String(), until: Type.String({ format: 'date-time' }) }),
    ),
    history: Type.Array(
      Type.Object({
        at: Type.String({ format: 'date-time' }),
        action: Type.Union(
          ['upgraded', 'upgrade_failed', 'rolled_back', 'rollback_failed', 'probation_passed'].map((a) =>
            Type.Literal(a),
          ),
        ),
        version: Type.String(),
        fromVersion: Type.Optional(Type.String()),
        error: Type.Optional(Problem),
      }),
    ),
  },
  { $id: 'PluginStatus' },
);

const ok = <T extends Record<string, TSchema>>(fields: T) =>
  Type.Object({ ok: Type.Literal(true), ...fields }, { additionalProperties: false });

export const HealthBody = ok({});
export const PluginListBody = ok({ plugins: Type.Array(Type.Ref('PluginStatus')) });
export const PluginBody = ok({ plugin: Type.Ref('PluginStatus') });
export const RemovedBody = ok({
  removed: Type.Array(Type.String(), { description: 'the ids removed, in the order stopped' }),
});
export const CallBody = ok({
  output: Type.String(),
  outputEncoding: Type.Union([Type.Literal('utf8'), Type.Literal('base64')]),
  stats: Type.Object({ fuelConsumed: Type.Number(), durationMs: Type.Number() }),
});

/** A tenant's quotas by name (docs/TENANTS.md); the registry judges the names and the values (`tenant_invalid`). */
export const TenantQuotasSchema = Type.Record(Type.String(), Type.Number({ minimum: 0 }), {
  $id: 'TenantQuotas',
  description:
    'max_concurrent_calls, calls_per_second, calls_burst, max_plugins, events_per_second, storage_bytes, storage_keys, filesystem_bytes, memory_mb, cpu_weight, fuel_per_second',
});

export const TenantSpecSchema = Type.Object(
  {
    plugin_dirs: Type.Optional(Type.Array(Type.String(), { description: 'absolute directories' })),
    quotas: Type.Optional(Type.Ref('TenantQuotas')),
  },
  { additionalProperties: false },
);

const TenantInfo = Type.Object({
  id: Type.String(),
  origin: Type.Union([Type.Literal('default'), Type.Literal('config'), Type.Literal('runtime')]),
  spec: Type.Object({
    plugin_dirs: Type.Optional(Type.Array(Type.String())),
    quotas: Type.Optional(Type.Ref('TenantQuotas')),
  }),
  plugins: Type.Integer({ minimum: 0, description: 'plugins the tenant holds' }),
});
export const TenantBody = ok({ tenant: TenantInfo });
export const TenantListBody = ok({ tenants: Type.Array(TenantInfo) });

const Usage = Type.Object({
  calls: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), {
    description: 'calls by outcome: ok or the error code',
  }),
  wallMs: Type.Number(),
  fuel: Type.Number(),
  bytesIn: Type.Number(),
  bytesOut: Type.Number(),
  storageBytes: Type.Number(),
  storageKeys: Type.Number(),
  sandboxStarts: Type.Number(),
});
export const UsageBody = ok({
  usage: Type.Object({
    tenant: Type.String(),
    since: Type.String({ format: 'date-time' }),
    plugins: Type.Record(Type.String(), Usage),
    total: Usage,
    inFlight: Type.Integer({ minimum: 0 }),
    denied: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
    quotas: Type.Ref('TenantQuotas'),
    filesystem: Type.Optional(
      Type.Object(
        { usedBytes: Type.Number(), availableBytes: Type.Number(), limitBytes: Type.Number() },
        { description: "the tenant's own file system (quotas.filesystem_bytes), by statfs" },
      ),
    ),
  }),
});

/** Path parameters: percent-decoded segments; the host and the directory judge them (404 when unknown). */
export const PluginParams = Type.Object({ id: Type.String() });
export const CallParams = Type.Object({ id: Type.String(), fn: Type.String() });
export const TenantParams = Type.Object({
  tenant: Type.String({ description: 'a tenant id: [a-z0-9][a-z0-9-]{0,62}' }),
});
export const TenantPluginParams = Type.Object({ tenant: Type.String(), id: Type.String() });
export const TenantCallParams = Type.Object({ tenant: Type.String(), id: Type.String(), fn: Type.String() });

/** Repeatable: `arg` appended to a WASI command's arguments, `env=NAME=VALUE` over its environment. */
export const CallQuery = Type.Object(
  {
    arg: Type.Optional(Type.Array(Type.String())),
    env: Type.Optional(Type.Array(Type.String({ pattern: '^[^=]+=' }))),
  },
  { additionalProperties: false },
);
export const RemoveQuery = Type.Object(
  { dependants: Type.Optional(Type.Array(Type.Union([Type.Literal('true'), Type.Literal('false')]))) },
  { additionalProperties: false },
);
export const NoQuery = Type.Object({}, { additionalProperties: false });

/** Every failure's answer, by status, for the routes' `response` (what the OpenAPI document lists). */
export const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, Type.Ref('Error')]));
