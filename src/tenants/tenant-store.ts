import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { ReedError } from '../errors.js';
import { TenantQuotasSchema } from '../host/config-schema.js';
import { readJsonRecord, removeRecordTemps, writeJsonRecord } from '../json-record.js';
import { compileSchema } from '../schema-check.js';
import { MIN_FILESYSTEM_BYTES } from '../tenant-quotas.js';
import { type RemovedTenantData, TENANT_ID_PATTERN, type TenantSpec } from './tenant.js';

/** tenant.json: a runtime-created tenant, as the registry persists it under `<data_dir>/tenants/<id>/`. */
export interface TenantRecord {
  id: string;
  spec: TenantSpec;
  /** ISO 8601. */
  created: string;
  /**
   * 16 hex digits, new for each tenant created (kept when it is updated): its data directory is
   * `data-<generation>`, so a tenant created again with the id of a removed one starts empty. Absent in the
   * tenant.json of versions before it: that tenant's data directory is `data`.
   */
  generation?: string;
}

const GENERATION = /^[0-9a-f]{16}$/;
/** A tenant's data directory's name in `<data_dir>/tenants/<id>/`: `data` (no generation) or `data-<generation>`. */
const DATA_DIR = /^data(?:-([0-9a-f]{16}))?$/;

/** A new tenant's generation. */
export function newGeneration(): string {
  return randomBytes(8).toString('hex');
}

/** The name of the data directory of a tenant of that generation (`data` for none: reed.toml's, and older ones). */
export function dataDirName(generation: string | undefined): string {
  return generation === undefined ? 'data' : `data-${generation}`;
}

/**
 * The data directories in `<data_dir>/tenants/` that no tenant uses: each id's `data` and `data-<generation>`
 * directories (never a link) but `inUse(id)`'s name, for every id or one.
 */
export function removedTenantData(
  dataDir: string,
  inUse: (id: string) => string | undefined,
  only?: string,
): RemovedTenantData[] {
  const root = join(dataDir, 'tenants');
  const out: RemovedTenantData[] = [];
  for (const id of only === undefined ? listDir(root).sort() : [only]) {
    if (!TENANT_ID_PATTERN.test(id)) continue;
    const live = inUse(id);
    for (const name of listDir(join(root, id)).sort()) {
      const m = DATA_DIR.exec(name);
      if (m === null || name === live) continue;
      const path = join(root, id, name);
      if (!lstatSync(path).isDirectory()) continue;
      out.push({ tenant: id, generation: m[1] ?? null, path });
    }
  }
  return out;
}

export const TENANT_FILE = 'tenant.json';
/** A tenant.json is a few hundred bytes; anything past this is not one. */
const MAX_TENANT_FILE_BYTES = 64 * 1024;

const TenantSpecSchema = Type.Object(
  {
    plugin_dirs: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' }), { maxItems: 64 }),
    ),
    quotas: Type.Optional(TenantQuotasSchema),
  },
  { additionalProperties: false },
);
/** Compiled at the first check (ajv's compile is tens of ms): a host without tenants never pays it. */
let validSpec: ReturnType<typeof compileSchema> | undefined;

/** Checks a spec from the API or tenant.json: `tenant_invalid` naming the field, else the spec (copied). */
export function checkTenantSpec(id: string, spec: unknown, where = 'tenant spec'): TenantSpec {
  if (!TENANT_ID_PATTERN.test(id))
    throw new ReedError(
      'tenant_invalid',
      `tenant id "${id.slice(0, 80)}" is not valid: lowercase letters, digits and "-", starting with a letter or digit, at most 63 characters`,
      { details: { field: 'id' } },
    );
  validSpec ??= compileSchema(TenantSpecSchema);
  if (!validSpec(spec)) {
    const e = validSpec.errors?.[0];
    const field =
      `${e?.instancePath ?? ''}${e?.keyword === 'additionalProperties' ? `/${String(e.params.additionalProperty)}` : ''}`
        .replace(/^\//, '')
        .replace(/\//g, '.');
    throw new ReedError(
      'tenant_invalid',
      `${where} of tenant "${id}": ${field === '' ? 'the spec' : `\`${field}\``} ${e?.message ?? 'is not valid'}${e?.keyword === 'pattern' ? ' (plugin_dirs must be absolute paths)' : ''}`,
      { details: { field } },
    );
  }
  const s = spec as TenantSpec;
  if (s.quotas?.calls_burst !== undefined && s.quotas.calls_per_second === undefined)
    throw new ReedError(
      'tenant_invalid',
      `${where} of tenant "${id}": \`quotas.calls_burst\` needs calls_per_second (the rate that refills the burst)`,
      { details: { field: 'quotas.calls_burst' } },
    );
  const fsBytes = s.quotas?.filesystem_bytes;
  if (fsBytes !== undefined && fsBytes < MIN_FILESYSTEM_BYTES)
    throw new ReedError(
      'tenant_invalid',
      `${where} of tenant "${id}": \`quotas.filesystem_bytes\` = ${fsBytes} is below the smallest tenant file system (${MIN_FILESYSTEM_BYTES} bytes)`,
      { details: { field: 'quotas.filesystem_bytes' } },
    );
  return {
    ...(s.plugin_dirs === undefined ? {} : { plugin_dirs: [...s.plugin_dirs] }),
    ...(s.quotas === undefined ? {} : { quotas: { ...s.quotas } }),
  };
}

/**
 * `<data_dir>/tenants`, and each tenant's directory in it: 0711 (others may pass, as bubblewrap must to reach a
 * plugin's data directory as a runner's uid, but not list), and refused when it is not a directory.
 */
export function tenantDir(dataDir: string, id: string): string {
  const root = join(dataDir, 'tenants');
  const dir = join(root, id);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // On a root host data_dir is passable by others too (ensureDataDir does the same for the default tenant): a
  // tenant's plugin's data directory is under it.
  const top = lstatSync(dataDir);
  if (process.getuid?.() === 0 && top.isDirectory() && top.uid === 0 && (top.mode & 0o001) === 0)
    chmodSync(dataDir, (top.mode & 0o7777) | 0o001);
  for (const d of [dataDir, root, dir]) {
    if (d !== dataDir) mkdirSync(d, { recursive: true, mode: 0o711 });
    // A link here would put a tenant's data (or its removal) somewhere else: never followed.
    if (!lstatSync(d).isDirectory())
      throw new ReedError(
        'tenant_store_unreadable',
        `${d} is not a directory (a link?): refusing to use it`,
        {
          file: d,
        },
      );
  }
  return dir;
}

/** Writes tenant.json atomically: a new file beside it (never through a link), synced, renamed over it. */
export function writeTenantRecord(dataDir: string, record: TenantRecord): void {
  writeJsonRecord(tenantDir(dataDir, record.id), TENANT_FILE, record, 2);
}

export function deleteTenantRecord(dataDir: string, id: string): void {
  try {
    unlinkSync(join(dataDir, 'tenants', id, TENANT_FILE));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Reads one tenant.json (no link followed, size bounded, checked). Throws `tenant_store_unreadable`. */
export function readTenantRecord(dataDir: string, id: string): TenantRecord {
  const file = join(dataDir, 'tenants', id, TENANT_FILE);
  const fail = (why: string, cause?: unknown): ReedError =>
    new ReedError('tenant_store_unreadable', `${file}: ${why}`, { file, cause });
  const parsed = readJsonRecord(file, MAX_TENANT_FILE_BYTES, fail);
  if (parsed === undefined) throw fail('ENOENT: there is no such file');
  const r = parsed as Partial<TenantRecord> | null;
  if (r === null || typeof r !== 'object' || r.id !== id || typeof r.created !== 'string')
    throw fail(`its id is not "${id}", or it has no created time`);
  if (r.generation !== undefined && (typeof r.generation !== 'string' || !GENERATION.test(r.generation)))
    throw fail('its generation is not 16 hex digits');
  try {
    return {
      id,
      spec: checkTenantSpec(id, r.spec, file),
      created: r.created,
      ...(r.generation === undefined ? {} : { generation: r.generation }),
    };
  } catch (error) {
    throw fail((error as Error).message, error);
  }
}

/**
 * Removes the temporary files of tenant.json writes that a killed host left in each tenant's directory (this
 * version's `tenant.json.<hex>.tmp`, and the `.tenant.json.<hex>` of versions before it). The registry's start, its
 * data_dir's one writer, calls it.
 */
export function sweepTenantRecords(dataDir: string): void {
  const root = join(dataDir, 'tenants');
  for (const id of listDir(root)) {
    if (!TENANT_ID_PATTERN.test(id)) continue;
    const dir = join(root, id);
    if (!lstatSync(dir).isDirectory()) continue;
    removeRecordTemps(dir, TENANT_FILE);
    for (const name of listDir(dir))
      if (/^\.tenant\.json\.[0-9a-f]{12}$/.test(name)) unlinkSync(join(dir, name));
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}

/** The ids of the tenants persisted under `<data_dir>/tenants/` (directories holding a tenant.json). */
export function persistedTenantIds(dataDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(join(dataDir, 'tenants'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names
    .filter((n) => TENANT_ID_PATTERN.test(n))
    .filter((n) => {
      try {
        return lstatSync(join(dataDir, 'tenants', n, TENANT_FILE)).isFile();
      } catch {
        return false;
      }
    })
    .sort();
}
