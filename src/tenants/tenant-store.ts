import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { ReedError } from '../errors.js';
import { TenantQuotasSchema } from '../host/config-schema.js';
import { compileSchema } from '../schema-check.js';
import { TENANT_ID_PATTERN, type TenantSpec } from './tenant.js';

/** tenant.json: a runtime-created tenant, as the registry persists it under `<data_dir>/tenants/<id>/`. */
export interface TenantRecord {
  id: string;
  spec: TenantSpec;
  /** ISO 8601. */
  created: string;
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
const validSpec = compileSchema(TenantSpecSchema);

/** Checks a spec from the API or tenant.json: `tenant_invalid` naming the field, else the spec (copied). */
export function checkTenantSpec(id: string, spec: unknown, where = 'tenant spec'): TenantSpec {
  if (!TENANT_ID_PATTERN.test(id))
    throw new ReedError(
      'tenant_invalid',
      `tenant id "${id.slice(0, 80)}" is not valid: lowercase letters, digits and "-", starting with a letter or digit, at most 63 characters`,
      { details: { field: 'id' } },
    );
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
  if (s.quotas?.filesystem_bytes !== undefined)
    throw new ReedError(
      'tenant_invalid',
      `${where} of tenant "${id}": \`quotas.filesystem_bytes\` is not enforced by this version, so it is refused rather than ignored: each plugin\u2019s data directory is bounded by limits.disk_mb and max_files (docs/TENANTS.md, "Filesystem bytes")`,
      {
        details: { field: 'quotas.filesystem_bytes' },
      },
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
  const dir = tenantDir(dataDir, record.id);
  const tmp = join(dir, `.${TENANT_FILE}.${randomBytes(6).toString('hex')}`);
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeSync(fd, `${JSON.stringify(record, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, TENANT_FILE));
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
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
  const fail = (why: string, cause?: unknown): never => {
    throw new ReedError('tenant_store_unreadable', `${file}: ${why}`, { file, cause });
  };
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return fail((error as Error).message, error);
  }
  let text: string;
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return fail('not a regular file');
    if (stat.size > MAX_TENANT_FILE_BYTES) return fail(`larger than ${MAX_TENANT_FILE_BYTES} bytes`);
    const buf = Buffer.alloc(stat.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    text = buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON: ${(error as Error).message}`, error);
  }
  const r = parsed as Partial<TenantRecord> | null;
  if (r === null || typeof r !== 'object' || r.id !== id || typeof r.created !== 'string')
    return fail(`its id is not "${id}", or it has no created time`);
  try {
    return { id, spec: checkTenantSpec(id, r.spec, file), created: r.created };
  } catch (error) {
    return fail((error as Error).message, error);
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
