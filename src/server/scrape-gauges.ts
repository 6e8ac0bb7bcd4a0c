// The metrics read from the hosts when Prometheus scrapes (not from events): each plugin's state, each sandbox's
// memory and CPU, each plugin's storage, each tenant's disk bytes and quota rejections.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PluginHost } from '../host/plugin-host.js';
import type { TenantUsage } from '../tenants/tenant.js';
import type { MetricLabels } from './metric-labels.js';
import { TenantDiskMeter, type TenantDiskOptions } from './tenant-disk.js';

/** One host whose plugins are measured, and the tenant it serves. */
export interface MetricsTarget {
  tenant: string;
  host: PluginHost;
  /** The tenant's accounting (quota rejections), where a tenant registry keeps one. */
  usage?: () => TenantUsage;
}

const STATES = ['starting', 'ready', 'restarting', 'idle', 'draining', 'failed', 'stopped'] as const;

/** Gauges read from the hosts at each scrape: plugin states, memory, CPU, storage, disk, quota rejections. */
export function registerScrapeGauges(
  registry: Registry,
  labels: MetricLabels,
  listTargets: () => Iterable<MetricsTarget>,
  disk: TenantDiskOptions = {},
): void {
  const registers = [registry];
  const targets = () => [...listTargets()];
  new Gauge({
    name: 'reed_plugin_state',
    help: 'Each plugin known to a host: 1 for the state it is in (starting, ready, restarting, idle, draining, failed, stopped)',
    labelNames: ['tenant', 'plugin', 'mode', 'state'],
    registers,
    collect() {
      this.reset();
      for (const { tenant, host } of targets())
        for (const p of safe(() => host.status(), [])) {
          const plugin = labels.plugin(tenant, p.id);
          for (const state of STATES)
            this.inc({ tenant, plugin, mode: p.mode, state }, state === p.state ? 1 : 0);
        }
    },
  });
  const usages = () =>
    targets().flatMap(({ tenant, host }) =>
      safe(() => host.status(), [])
        .filter((p) => p.state === 'ready' || p.state === 'restarting')
        .map((p) => ({
          labels: { tenant, plugin: labels.plugin(tenant, p.id), mode: p.mode },
          usage: safe(() => host.sandbox(p.id).usage?.(), undefined),
        })),
    );
  new Gauge({
    name: 'reed_sandbox_memory_bytes',
    help: 'Memory a sandbox uses now: its cgroup (process, container modes), its WASM linear memory (mode none)',
    labelNames: ['tenant', 'plugin', 'mode'],
    registers,
    collect() {
      this.reset();
      for (const { labels, usage } of usages())
        if (usage?.memoryBytes !== undefined) this.inc(labels, usage.memoryBytes);
    },
  });
  new Counter({
    name: 'reed_sandbox_cpu_seconds_total',
    help: "CPU time of the current runner's cgroup since it started (process, container modes; restarts from 0)",
    labelNames: ['tenant', 'plugin', 'mode'],
    registers,
    collect() {
      this.reset();
      for (const { labels, usage } of usages())
        if (usage?.cpuSeconds !== undefined) this.inc(labels, usage.cpuSeconds);
    },
  });
  new Gauge({
    name: 'reed_storage_bytes',
    help: "Bytes a plugin's storage namespace costs on disk now (the storage quota's measure)",
    labelNames: ['tenant', 'plugin'],
    registers,
    collect() {
      this.reset();
      for (const { tenant, host } of targets())
        for (const p of safe(() => host.status(), [])) {
          const bytes = safe(() => host.services.storage.usage(p.id), undefined);
          if (bytes !== undefined) this.inc({ tenant, plugin: labels.plugin(tenant, p.id) }, bytes);
        }
    },
  });
  registerTenantDisk(registers, targets, new TenantDiskMeter(disk));
  new Counter({
    name: 'reed_quota_rejections_total',
    help: "Calls and installs refused with quota_exceeded, by the tenant's quota that refused them",
    labelNames: ['tenant', 'quota'],
    registers,
    collect() {
      this.reset();
      for (const { tenant, usage } of targets()) {
        const denied = usage === undefined ? undefined : safe(() => usage().denied, undefined);
        for (const [quota, n] of Object.entries(denied ?? {})) this.inc({ tenant, quota }, n);
      }
    },
  });
}

/** reed_tenant_disk_bytes, _entries and _capped: one walk of each tenant's files at most per scrape (tenant-disk.ts). */
function registerTenantDisk(
  registers: Registry[],
  targets: () => MetricsTarget[],
  meter: TenantDiskMeter,
): void {
  // The three gauges are collected in turn at one scrape: the walk is made by the first, read by the others.
  let figures: ReturnType<TenantDiskMeter['measure']> = new Map();
  new Gauge({
    name: 'reed_tenant_disk_bytes',
    help: "Bytes the tenant's plugins hold in their data directories (files/<plugin>/: regular files' sizes, each once, and directories' own, no link followed; the disk quota's measure), measured at most once a minute",
    labelNames: ['tenant'],
    registers,
    collect() {
      const dataDirs = new Map<string, string>();
      for (const { tenant, host } of targets()) dataDirs.set(tenant, host.config.dataDir);
      figures = safe(() => meter.measure(dataDirs), figures);
      this.reset();
      for (const [tenant, figure] of figures)
        if (figure.bytes !== undefined) this.set({ tenant }, figure.bytes);
    },
  });
  new Gauge({
    name: 'reed_tenant_disk_entries',
    help: "Files, directories and links in the tenant's plugins' data directories, as the last walk read them",
    labelNames: ['tenant'],
    registers,
    collect() {
      this.reset();
      for (const [tenant, figure] of figures) this.set({ tenant }, figure.entries);
    },
  });
  new Gauge({
    name: 'reed_tenant_disk_capped',
    help: "1 when the tenant's last disk walk ran out of the entries a scrape may read (no bytes figure then)",
    labelNames: ['tenant'],
    registers,
    collect() {
      this.reset();
      for (const [tenant, figure] of figures) this.set({ tenant }, figure.capped ? 1 : 0);
    },
  });
}

/** A scrape never fails because one host is closing: what cannot be read is left out. */
export function safe<T, F>(read: () => T, fallback: F): T | F {
  try {
    return read();
  } catch {
    return fallback;
  }
}
