import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { removeTree } from '../backends/shared/safe-remove.js';
import { newSession } from '../backends/shared/session.js';
import type { Code } from '../codes.js';
import { isReedError, ReedError } from '../errors.js';
import { subscribeEvent } from '../events/events.js';
import { defaultLogger } from '../host/default-logger.js';
import { type HostConfig, loadHostConfig } from '../host/host-config.js';
import { InstallSlots } from '../host/install-slots.js';
import { LmdbStorage } from '../host/lmdb-storage.js';
import { PluginHost, type PluginHostOptions } from '../host/plugin-host.js';
import { type EventBus, MemoryEventBus, type StorageService } from '../host/services.js';
import { AuditLog, type AuditLogOptions } from './audit-log.js';
import {
  DEFAULT_TENANT,
  type RemovedTenantData,
  type RemoveTenantOptions,
  TENANT_ID_PATTERN,
  type Tenant,
  type TenantDirectory,
  type TenantSpec,
  type TenantUsage,
} from './tenant.js';
import { TenantHost } from './tenant-host.js';
import { TenantEventBus, TenantStorage } from './tenant-services.js';
import {
  checkTenantSpec,
  dataDirName,
  deleteTenantRecord,
  newGeneration,
  persistedTenantIds,
  readTenantRecord,
  removedTenantData,
  sweepTenantRecords,
  tenantDir,
  writeTenantRecord,
} from './tenant-store.js';
import { sweepTenantVolumes, TenantVolume } from './tenant-volume.js';

/** The codes of a tenant file system that cannot be had: a reed.toml tenant failing so is left out, not fatal. */
const VOLUME_CODES: ReadonlySet<Code> = new Set(['tenant_volume_damaged', 'tenant_volume_no_space']);

/**
 * PluginHost's options for every tenant's host, but `plugins`, which only the default tenant's host takes (serve's
 * `--plugin`: the plugins of before tenants existed).
 */
export interface TenantRegistryOptions
  extends Omit<PluginHostOptions, 'config' | 'tenant' | 'services' | 'session'> {
  /** Default: `loadHostConfig()`. Its `[tenants]` declares the tenants besides the default one. */
  config?: HostConfig;
  /**
   * Each tenant's inner storage (the quota wrapper goes around it). Default: LMDB under the tenant's data dir
   * (`<data_dir>/storage` for the default tenant, as before tenants existed).
   */
  storage?: (tenant: string, dataDir: string) => StorageService;
  /** Each tenant's event bus. Default: one MemoryEventBus per tenant (events never cross tenants). */
  events?: (tenant: string) => EventBus;
  /** The audit log under `<data_dir>/audit/` (fed from `reed:audit`). Default on; `false`: none. */
  audit?: false | AuditLogOptions;
}

/**
 * Every tenant's host (docs/TENANTS.md). The default tenant is the host of before tenants existed: the same
 * data_dir, plugin_dirs and storage, so nothing moves for existing users. The tenants of reed.toml's `[tenants]`
 * and those created at runtime (persisted in `<data_dir>/tenants/<id>/tenant.json`) each get a PluginHost of their
 * own over `<data_dir>/tenants/<id>/data` (storage, files, installed plugins), their own event bus, their own
 * logger child `{tenant}`, and `tenant` in PluginHostOptions (events, container labels, cgroups).
 */
export class TenantRegistry implements TenantDirectory {
  readonly config: HostConfig;
  readonly logger: Logger;
  readonly #options: TenantRegistryOptions;
  readonly #tenants = new Map<string, TenantHost>();
  /** The name of each running tenant's data directory in `<data_dir>/tenants/<id>/` (`data`, `data-<generation>`). */
  readonly #dataNames = new Map<string, string>();
  /** Which tenant each host session is, for the events that name only a session. */
  readonly #bySession = new Map<string, TenantHost>();
  /** Hosts being started: their sandbox starts, until the tenant exists to count them. */
  readonly #starting = new Map<string, Map<string, number>>();
  readonly #unsubscribe: (() => void)[] = [];
  #audit: AuditLog | undefined;
  /** create and remove run one at a time. */
  #serial: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(options: TenantRegistryOptions) {
    this.config = options.config ?? loadHostConfig();
    // One bound on archives taken in at once for every tenant's host (installs of N tenants at once queue there).
    const { maxConcurrentInstalls, installQueue } = this.config.lifecycle;
    this.#options = {
      ...options,
      installSlots: options.installSlots ?? new InstallSlots(maxConcurrentInstalls, installQueue),
    };
    this.logger = options.logger ?? defaultLogger();
  }

  static async start(options: TenantRegistryOptions = {}): Promise<TenantRegistry> {
    const registry = new TenantRegistry(options);
    try {
      await registry.#start();
    } catch (error) {
      await registry.close();
      throw error;
    }
    return registry;
  }

  async #start(): Promise<void> {
    if (this.#options.audit !== false) {
      this.#audit = new AuditLog(join(this.config.dataDir, 'audit'), this.#options.audit ?? {});
      this.#audit.start();
    }
    const starts = (pluginId: string, session: string) => {
      const tenant = this.#bySession.get(session);
      if (tenant !== undefined) tenant.accounting.of(pluginId).sandboxStarts++;
      const starting = this.#starting.get(session);
      if (starting !== undefined) starting.set(pluginId, (starting.get(pluginId) ?? 0) + 1);
    };
    this.#unsubscribe.push(
      subscribeEvent('reed:sandbox:started', (e) => starts(e.pluginId, e.session)),
      // Mode none has no runner: its sandbox starts when the plugin loads.
      subscribeEvent('reed:plugin:loaded', (e) => {
        if (e.mode === 'none') starts(e.pluginId, e.session);
      }),
      subscribeEvent('reed:plugin:upgraded', (e) => {
        if (e.mode === 'none') starts(e.pluginId, e.session);
      }),
    );
    sweepTenantRecords(this.config.dataDir);
    // Tenant file systems a host that died left mounted: each tenant's start below mounts its image again.
    await sweepTenantVolumes(this.config.dataDir, this.logger);
    const declared = this.config.tenants;
    await this.#startTenant(DEFAULT_TENANT, 'default', { quotas: declared[DEFAULT_TENANT]?.quotas ?? {} });
    for (const [id, t] of Object.entries(declared)) {
      if (id === DEFAULT_TENANT) continue;
      try {
        await this.#startTenant(id, 'config', { plugin_dirs: t.pluginDirs, quotas: t.quotas });
      } catch (error) {
        // A reed.toml tenant's own file system that cannot be had (damaged past e2fsck -p, or no room left under
        // data_dir for its blocks) is the state of its data, not the operator's configuration: that tenant alone
        // is left out, as a runtime tenant is below. Any other failure of reed.toml's tenants stops the start.
        if (!isReedError(error) || !VOLUME_CODES.has(error.code)) throw error;
        this.#leftOut(id, error);
      }
    }
    for (const id of persistedTenantIds(this.config.dataDir)) {
      if (this.#tenants.has(id)) {
        this.logger.warn(
          { tenant: id },
          `tenant "${id}" is declared in reed.toml and was also created through the API: reed.toml's wins`,
        );
        continue;
      }
      // A tenant made through the API that cannot start (its store unreadable, its file system gone) is left out,
      // said in the log with its code, and every other tenant is served: one tenant's state must not keep the
      // host down (the sixth review: a version with a trailing space in one tenant's store stopped serve for all).
      // The default tenant and reed.toml's are the operator's own: their failure still stops the start.
      try {
        const record = readTenantRecord(this.config.dataDir, id);
        await this.#startTenant(id, 'runtime', record.spec, record.generation);
      } catch (error) {
        this.#leftOut(id, error);
      }
    }
  }

  /** A tenant that could not start, said in the log with its code: not served; every other tenant is. */
  #leftOut(id: string, error: unknown): void {
    const code = error instanceof ReedError ? error.code : 'internal_error';
    this.logger.error(
      { tenant: id, code, err: error },
      `tenant "${id}" could not start (${code}: ${error instanceof Error ? error.message : String(error)}); it is not served until that is fixed and the host restarted; every other tenant is`,
    );
  }

  /**
   * A tenant's data dir: data_dir itself for the default tenant, else `<data_dir>/tenants/<id>/data-<generation>`
   * for one created through the API (`data` for reed.toml's, and for one created before generations).
   */
  dataDirOf(id: string): string {
    return id === DEFAULT_TENANT
      ? this.config.dataDir
      : join(this.config.dataDir, 'tenants', id, this.#dataNames.get(id) ?? 'data');
  }

  async #startTenant(
    id: string,
    origin: Tenant['origin'],
    spec: TenantSpec,
    generation?: string,
  ): Promise<TenantHost> {
    const quotas = spec.quotas ?? {};
    const dataDir =
      id === DEFAULT_TENANT
        ? this.config.dataDir
        : join(this.config.dataDir, 'tenants', id, dataDirName(generation));
    if (id !== DEFAULT_TENANT) tenantDir(this.config.dataDir, id);
    const config: HostConfig =
      id === DEFAULT_TENANT
        ? this.config
        : {
            ...this.config,
            pluginDirs: spec.plugin_dirs ?? [],
            defaultSearchPaths: false,
            searchPaths: spec.plugin_dirs ?? [],
            dataDir,
          };
    // quotas.filesystem_bytes: the tenant's files/ is a file system of its own, mounted before its plugins load.
    if (quotas.filesystem_bytes !== undefined) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const volume = await TenantVolume.open(id, dataDir, quotas.filesystem_bytes, this.logger);
    let inner: StorageService;
    try {
      inner = this.#options.storage?.(id, dataDir) ?? new LmdbStorage(join(dataDir, 'storage'));
    } catch (error) {
      await volume?.close();
      throw error;
    }
    const storage = new TenantStorage(inner, id, quotas);
    const events = new TenantEventBus(this.#options.events?.(id) ?? new MemoryEventBus(), id, quotas);
    const { storage: _s, events: _e, audit: _a, plugins, ...hostOptions } = this.#options;
    // The session names the tenant on every event and container label, the default tenant's too.
    const session = { ...newSession(), tenant: id };
    let host: PluginHost;
    // Known before the host starts: its first sandboxes start (and are counted) inside PluginHost.start.
    const pending = { starts: new Map<string, number>() };
    this.#starting.set(session.id, pending.starts);
    try {
      host = await PluginHost.start({
        ...hostOptions,
        // `plugins` (serve's --plugin) picks among the default tenant's plugins; every other tenant loads all its own.
        ...(id === DEFAULT_TENANT && plugins !== undefined ? { plugins } : {}),
        config,
        logger: id === DEFAULT_TENANT ? this.logger : this.logger.child({ tenant: id }),
        services: { storage, events },
        // The default tenant without quotas is the host of before: no tenant for the backends (no cgroup of its own).
        ...(id === DEFAULT_TENANT && Object.keys(quotas).length === 0 ? {} : { tenant: { id, quotas } }),
        session,
      });
    } catch (error) {
      storage.close();
      await volume?.close();
      throw error;
    } finally {
      this.#starting.delete(session.id);
    }
    const tenant = new TenantHost(id, origin, spec, host, storage, events, volume);
    for (const [pluginId, n] of pending.starts) tenant.accounting.of(pluginId).sandboxStarts += n;
    storage.seed();
    for (const s of host.status()) storage.space(s.id);
    this.#tenants.set(id, tenant);
    if (id !== DEFAULT_TENANT) this.#dataNames.set(id, dataDirName(generation));
    this.#bySession.set(host.session.id, tenant);
    const max = quotas.max_plugins;
    if (max !== undefined && host.status().length > max)
      this.logger.warn(
        { tenant: id },
        `tenant "${id}" has ${host.status().length} plugins in its plugin_dirs, above its quota max_plugins = ${max}: all are loaded, and no install is taken until it is below`,
      );
    return tenant;
  }

  async #stopTenant(tenant: TenantHost): Promise<void> {
    this.#tenants.delete(tenant.id);
    this.#dataNames.delete(tenant.id);
    try {
      await tenant.host.close();
    } finally {
      this.#bySession.delete(tenant.host.session.id);
      tenant.storage.close();
      // After every sandbox is gone: nothing holds a file in it.
      await tenant.volume?.close();
    }
  }

  get(id: string): Tenant | undefined {
    return this.#tenants.get(id);
  }

  list(): Tenant[] {
    return [...this.#tenants.values()];
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(() => {
      if (this.#closing !== undefined) throw new ReedError('host_closed', 'the tenant registry is closed');
      return work();
    });
    this.#serial = run.catch(() => undefined);
    return run;
  }

  create(id: string, spec: TenantSpec): Promise<Tenant> {
    return this.#serially(async () => {
      const checked = checkTenantSpec(id, spec);
      const existing = this.#tenants.get(id);
      // The default tenant and reed.toml's, running or left out at the start (their file system failed).
      const declared = id === DEFAULT_TENANT || this.config.tenants[id] !== undefined;
      if (declared && existing?.origin !== 'runtime')
        throw new ReedError(
          'tenant_exists',
          `tenant "${id}" is ${id === DEFAULT_TENANT ? 'the default tenant' : 'declared in reed.toml'}: change it there, not through the API`,
        );
      const previous = existing === undefined ? undefined : readTenantRecord(this.config.dataDir, id);
      const had = previous?.spec.quotas?.filesystem_bytes;
      const wants = checked.quotas?.filesystem_bytes;
      // Lowering is refused (ext4 does not shrink online, and the bytes in use may not fit): before anything stops.
      if (had !== undefined && (wants === undefined || wants < had))
        throw new ReedError(
          'tenant_invalid',
          `tenant "${id}": \`quotas.filesystem_bytes\` cannot be lowered or removed (${had} bytes${wants === undefined ? ', none asked' : ` to ${wants}`}): its file system only grows (docs/TENANTS.md, "Filesystem bytes")`,
          { details: { field: 'quotas.filesystem_bytes', tenant: id } },
        );
      if (existing !== undefined) await this.#stopTenant(existing);
      // A new tenant gets a new generation, so a new data directory: never the data of a removed tenant of that id
      // (kept aside until purged). An updated one keeps its own.
      const generation = previous === undefined ? newGeneration() : previous.generation;
      writeTenantRecord(this.config.dataDir, {
        id,
        spec: checked,
        created: new Date().toISOString(),
        ...(generation === undefined ? {} : { generation }),
      });
      try {
        const tenant = await this.#startTenant(id, 'runtime', checked, generation);
        const kept =
          previous === undefined ? removedTenantData(this.config.dataDir, () => undefined, id) : [];
        this.logger.info(
          { tenant: id, ...(kept.length > 0 ? { removedData: kept.map((d) => d.path) } : {}) },
          existing === undefined
            ? kept.length > 0
              ? 'tenant created, empty: the data of the removed tenant of that id is kept aside until purged'
              : 'tenant created'
            : 'tenant updated',
        );
        return tenant;
      } catch (error) {
        // A new tenant that cannot start is not kept (it would fail every later start too), nor its new data
        // directory; an updated one goes back to the spec it had.
        if (previous === undefined) {
          deleteTenantRecord(this.config.dataDir, id);
          if (generation !== undefined)
            await removeTree(join(this.config.dataDir, 'tenants', id, dataDirName(generation)), this.logger);
        } else {
          writeTenantRecord(this.config.dataDir, previous);
          await this.#startTenant(id, 'runtime', previous.spec, previous.generation).catch((again: unknown) =>
            this.logger.error(
              { tenant: id, err: again },
              'tenant could not be restarted with its previous spec',
            ),
          );
        }
        throw error;
      }
    });
  }

  remove(id: string, options: RemoveTenantOptions = {}): Promise<void> {
    return this.#serially(async () => {
      const tenant = this.#tenants.get(id);
      if (tenant === undefined) throw notFound(id);
      if (tenant.origin !== 'runtime')
        throw new ReedError(
          'tenant_invalid',
          `tenant "${id}" is ${id === DEFAULT_TENANT ? 'the default tenant' : 'declared in reed.toml'}: it cannot be removed through the API`,
        );
      await this.#stopTenant(tenant);
      deleteTenantRecord(this.config.dataDir, id);
      if (options.purge === true) await removeTree(join(this.config.dataDir, 'tenants', id), this.logger);
      this.logger.info({ tenant: id, purge: options.purge === true }, 'tenant removed');
    });
  }

  /**
   * The data removed tenants left (removed without purge), of every id or of `id`: each kept in its own directory
   * until `purgeRemoved`, never handed to a tenant created later with the same id.
   */
  removedData(id?: string): RemovedTenantData[] {
    if (id !== undefined && !TENANT_ID_PATTERN.test(id)) return [];
    return removedTenantData(this.config.dataDir, (t) => this.#liveDataName(t), id);
  }

  /**
   * Deletes the data removed tenants of id `id` left (not the data of a tenant of that id that exists). Answers the
   * directories removed; `tenant_not_found` when there were none.
   */
  purgeRemoved(id: string): Promise<RemovedTenantData[]> {
    return this.#serially(async () => {
      const removed = this.removedData(id);
      if (removed.length === 0)
        throw new ReedError(
          'tenant_not_found',
          `no data of a removed tenant "${TENANT_ID_PATTERN.test(id) ? id : id.slice(0, 80)}" is kept`,
        );
      for (const d of removed) await removeTree(d.path, this.logger);
      // Nothing of the id left but an empty directory: gone too.
      if (!this.#tenants.has(id) && !persistedTenantIds(this.config.dataDir).includes(id))
        await removeTree(join(this.config.dataDir, 'tenants', id), this.logger);
      this.logger.info({ tenant: id, removedData: removed.map((d) => d.path) }, 'removed tenant data purged');
      return removed;
    });
  }

  /** The data directory's name of a tenant that exists (running, or persisted but not running: its record's). */
  #liveDataName(id: string): string | undefined {
    const running = this.#dataNames.get(id);
    if (running !== undefined) return running;
    // reed.toml's tenants that did not start, and records of tenants being created: their data is not left over.
    if (this.config.tenants[id] !== undefined) return 'data';
    if (persistedTenantIds(this.config.dataDir).includes(id))
      return dataDirName(readTenantRecord(this.config.dataDir, id).generation);
    return undefined;
  }

  usage(id: string): TenantUsage {
    const tenant = this.#tenants.get(id);
    if (tenant === undefined) throw notFound(id);
    return tenant.usage();
  }

  /** Closes every tenant's host (the default one last), then the audit log. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#serial;
      const others = [...this.#tenants.values()].filter((t) => t.id !== DEFAULT_TENANT);
      const errors: unknown[] = [];
      const results = await Promise.allSettled(others.map((t) => this.#stopTenant(t)));
      for (const r of results) if (r.status === 'rejected') errors.push(r.reason);
      const main = this.#tenants.get(DEFAULT_TENANT);
      if (main !== undefined) await this.#stopTenant(main);
      for (const u of this.#unsubscribe.splice(0)) u();
      this.#audit?.close();
      if (errors.length > 0) throw errors[0];
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function notFound(id: string): ReedError {
  return new ReedError(
    'tenant_not_found',
    `no tenant "${TENANT_ID_PATTERN.test(id) ? id : id.slice(0, 80)}"`,
  );
}
