// Prometheus metrics (issue 15), every figure from the events (src/events/: the one source for logs, metrics and
// the API) or read from the hosts at scrape time (states, memory, CPU, storage). docs/OPERATIONS.md lists them.
import { Counter, Gauge, Histogram, type Metric, type MetricValue, Registry } from 'prom-client';
import {
  type CallFinishedEvent,
  type EventBase,
  subscribeEvent,
  subscribeImageBuilt,
} from '../events/events.js';
import type { PluginHost } from '../host/plugin-host.js';
import type { TenantUsage } from '../tenants/tenant.js';
import { LOADER_VERSION } from '../version.js';

/** One host whose plugins are measured, and the tenant it serves. */
export interface MetricsTarget {
  tenant: string;
  host: PluginHost;
  /** The tenant's accounting (quota rejections), where a tenant registry keeps one. */
  usage?: () => TenantUsage;
}

export interface MetricsOptions {
  /** The hosts whose plugins' states, memory, CPU and storage are read at each scrape. */
  targets: () => Iterable<MetricsTarget>;
  /**
   * Which hosts' events count (their `session`). Default: every host of this process (events are process-wide):
   * `serve` runs one registry for all its tenants' hosts.
   */
  sessions?: (session: string) => boolean;
  /** The tenant of a host (by its session) for events that do not name one. Default: `default`. */
  tenantOf?: (session: string) => string | undefined;
  /**
   * Most (tenant, plugin) pairs given series of their own; the plugins past it share the label `plugin="_other"`.
   * Default 1000. With the bounded codes, modes and reasons, this bounds every metric's series.
   */
  maxPlugins?: number;
}

export const DEFAULT_MAX_PLUGINS = 1000;
/** The plugin label of a call to an id no host has loaded (the id is the caller's text: never a label). */
export const NO_PLUGIN = '_none';
export const OTHER_PLUGIN = '_other';
/** The tenant label of a host that serves no tenant (the host of before tenants: the default tenant). */
export const DEFAULT_TENANT_LABEL = 'default';

/** Seconds. A mode-none call takes microseconds, a process call ~100 us, a container one more; deadlines are seconds. */
export const CALL_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1, 2.5, 5, 10, 30,
];
/** Seconds: a WASM instance in milliseconds, a runner in ~100 ms, a container in seconds (an image build more). */
export const START_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
export const BUILD_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1200];

/** The calls of one (host, plugin, mode): kept as plain numbers on the call path, turned into series at scrape. */
interface CallSeries {
  labels: { tenant: string; plugin: string; mode: string };
  /** Calls that succeeded; `codes` the others by code. */
  ok: number;
  codes: Map<string, number>;
  /** Per bucket (not cumulative), and one more for +Inf. */
  buckets: Float64Array;
  count: number;
  sum: number;
  fuel: number;
}

const BREAKER = { closed: 0, 'half-open': 1, open: 2 } as const;
const STATES = ['starting', 'ready', 'restarting', 'draining', 'failed', 'stopped'] as const;

/**
 * The metrics of the hosts `targets()` lists, in a prom-client Registry of their own (`registry`; never the global
 * one). Subscribes to the events when made; `close()` unsubscribes.
 */
export class ReedMetrics {
  readonly registry = new Registry();
  readonly #targets: () => Iterable<MetricsTarget>;
  readonly #maxPlugins: number;
  readonly #sessions: ((session: string) => boolean) | undefined;
  readonly #tenantBySession: ((session: string) => string | undefined) | undefined;
  /** `tenant\nplugin` pairs given a label of their own. */
  readonly #plugins = new Set<string>();
  readonly #calls = new Map<string, CallSeries>();
  /** Runtime (wasm, native) by `session\nplugin`, from its last load or upgrade. */
  readonly #runtimes = new Map<string, string>();
  readonly #unsubscribes: (() => void)[] = [];
  /** The last call's host, plugin, mode and tenant, and its series. */
  #last:
    | {
        session: string;
        pluginId: string;
        mode: string | undefined;
        tenant: string | undefined;
        series: CallSeries;
      }
    | undefined;

  readonly #starts: Counter<'tenant' | 'plugin' | 'mode' | 'runtime' | 'reason'>;
  readonly #coldStart: Histogram<'tenant' | 'plugin' | 'mode' | 'reason'>;
  readonly #crashes: Counter<'tenant' | 'plugin' | 'mode' | 'code'>;
  readonly #loadFailures: Counter<'tenant' | 'plugin' | 'mode' | 'code'>;
  readonly #breaker: Gauge<'tenant' | 'plugin' | 'mode'>;
  readonly #builds: Counter<'kind' | 'code'>;
  readonly #buildSeconds: Histogram<'kind'>;

  constructor(options: MetricsOptions) {
    this.#targets = options.targets;
    this.#maxPlugins = options.maxPlugins ?? DEFAULT_MAX_PLUGINS;
    this.#sessions = options.sessions;
    this.#tenantBySession = options.tenantOf;
    const registers = [this.registry];
    new Gauge({
      name: 'reed_build_info',
      help: 'Always 1: the loader version and the Node.js version serving',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version: LOADER_VERSION, node_version: process.versions.node }, 1);
    this.#registerCalls();
    this.#starts = new Counter({
      name: 'reed_sandbox_starts_total',
      help: 'Sandboxes started, by reason: first_load (a load or reload), upgrade (a new version), restart (after a crash)',
      labelNames: ['tenant', 'plugin', 'mode', 'runtime', 'reason'],
      registers,
    });
    this.#coldStart = new Histogram({
      name: 'reed_cold_start_seconds',
      help: 'From the start of a sandbox (plan, instance, runner or container) to its plugin ready for calls',
      labelNames: ['tenant', 'plugin', 'mode', 'reason'],
      buckets: START_BUCKETS,
      registers,
    });
    this.#crashes = new Counter({
      name: 'reed_sandbox_crashes_total',
      help: 'Runners lost (exit, kill for a deadline or a health ping, out of memory) or failed restarts, by error code',
      labelNames: ['tenant', 'plugin', 'mode', 'code'],
      registers,
    });
    this.#loadFailures = new Counter({
      name: 'reed_plugin_load_failures_total',
      help: 'Loads and upgrades that failed (signature, start, init, a dependency), by error code',
      labelNames: ['tenant', 'plugin', 'mode', 'code'],
      registers,
    });
    this.#breaker = new Gauge({
      name: 'reed_breaker_state',
      help: "A supervised sandbox's circuit breaker: 0 closed, 1 half-open (one trial start), 2 open (calls fail with plugin_failed)",
      labelNames: ['tenant', 'plugin', 'mode'],
      registers,
    });
    this.#builds = new Counter({
      name: 'reed_image_builds_total',
      help: 'Container image builds, by kind (runner, plugin) and outcome (ok or the error code)',
      labelNames: ['kind', 'code'],
      registers,
    });
    this.#buildSeconds = new Histogram({
      name: 'reed_image_build_duration_seconds',
      help: 'How long a container image build took',
      labelNames: ['kind'],
      buckets: BUILD_BUCKETS,
      registers,
    });
    this.#registerScrapeTime();
    this.#subscribe();
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribes.splice(0)) unsubscribe();
  }

  /** The event's tenant (`default` for a host without one), or null for a host this registry does not count. */
  #tenantOf(event: EventBase | CallFinishedEvent): string | null {
    if (this.#sessions !== undefined && !this.#sessions(event.session)) return null;
    const own = (event as { tenant?: unknown }).tenant;
    if (typeof own === 'string') return own;
    return this.#tenantBySession?.(event.session) ?? DEFAULT_TENANT_LABEL;
  }

  /** The plugin label: the id while the pairs are within maxPlugins, then `_other`. */
  #plugin(tenant: string, plugin: string): string {
    const key = `${tenant}\n${plugin}`;
    if (this.#plugins.has(key)) return plugin;
    if (this.#plugins.size >= this.#maxPlugins) return OTHER_PLUGIN;
    this.#plugins.add(key);
    return plugin;
  }

  #labels(event: EventBase): { tenant: string; plugin: string; mode: string } | undefined {
    const tenant = this.#tenantOf(event);
    if (tenant === null) return undefined;
    return { tenant, plugin: this.#plugin(tenant, event.pluginId), mode: event.mode };
  }

  /** The runtime its last load or upgrade said (`unknown` before either). */
  #runtime(event: EventBase & { runtime?: string }): string {
    const key = `${event.session}\n${event.pluginId}`;
    if (event.runtime !== undefined) {
      if (this.#runtimes.size >= 10 * this.#maxPlugins) this.#runtimes.clear();
      this.#runtimes.set(key, event.runtime);
    }
    return this.#runtimes.get(key) ?? 'unknown';
  }

  /** The call path: a map lookup and a few additions per call; the series are made at scrape. */
  #onCall(event: CallFinishedEvent): void {
    // The same plugin as the last call (the common case): no key to build.
    const last = this.#last;
    let series: CallSeries | undefined;
    if (
      last !== undefined &&
      last.session === event.session &&
      last.pluginId === event.pluginId &&
      last.mode === event.mode &&
      last.tenant === event.tenant
    )
      series = last.series;
    else series = this.#seriesOf(event);
    if (series === undefined) return;
    if (event.code === 'ok') series.ok++;
    else series.codes.set(event.code, (series.codes.get(event.code) ?? 0) + 1);
    const seconds = event.durationMs / 1000;
    let i = 0;
    while (i < CALL_BUCKETS.length && seconds > (CALL_BUCKETS[i] as number)) i++;
    (series.buckets as Float64Array)[i] = ((series.buckets as Float64Array)[i] as number) + 1;
    series.count++;
    series.sum += seconds;
    series.fuel += event.fuelConsumed;
  }

  /** The series of a call's labels, made on its first call; undefined for a host this registry does not count. */
  #seriesOf(event: CallFinishedEvent): CallSeries | undefined {
    // A call to an id no host loaded has no mode: one series for all of them, whatever id the caller sent.
    const tenant = this.#tenantOf(event);
    if (tenant === null) return undefined;
    // Keyed by the labels: hosts that come and go (a tenant's host restarted) add to the same series.
    let key = `${tenant}\n${event.mode === undefined ? NO_PLUGIN : event.pluginId}\n${event.mode}`;
    let series = this.#calls.get(key);
    if (series === undefined) {
      const plugin = event.mode === undefined ? NO_PLUGIN : this.#plugin(tenant, event.pluginId);
      if (plugin === OTHER_PLUGIN) {
        key = `${tenant}\n${OTHER_PLUGIN}\n${event.mode}`;
        series = this.#calls.get(key);
      }
    }
    if (series === undefined) {
      const plugin = event.mode === undefined ? NO_PLUGIN : this.#plugin(tenant, event.pluginId);
      series = {
        labels: { tenant, plugin, mode: event.mode ?? 'none' },
        ok: 0,
        codes: new Map(),
        buckets: new Float64Array(CALL_BUCKETS.length + 1),
        count: 0,
        sum: 0,
        fuel: 0,
      };
      this.#calls.set(key, series);
    }
    this.#last = {
      session: event.session,
      pluginId: event.pluginId,
      mode: event.mode,
      tenant: event.tenant,
      series,
    };
    return series;
  }

  #subscribe(): void {
    const on = this.#unsubscribes;
    on.push(subscribeEvent('reed:call:finished', (e) => this.#onCall(e)));
    const started = (e: EventBase & { runtime?: string }, reason: string, startMs: number | undefined) => {
      const l = this.#labels(e);
      if (l === undefined) return;
      this.#starts.inc({ ...l, runtime: this.#runtime(e), reason });
      if (startMs !== undefined) this.#coldStart.observe({ ...l, reason }, startMs / 1000);
      this.#breaker.set(l, 0);
    };
    on.push(subscribeEvent('reed:plugin:loaded', (e) => started(e, 'first_load', e.startMs)));
    on.push(subscribeEvent('reed:plugin:upgraded', (e) => started(e, 'upgrade', e.startMs)));
    // A runner's first start is its plugin's load (counted above); a restart is the runner's alone.
    on.push(
      subscribeEvent('reed:sandbox:started', (e) => {
        if (e.restart) started(e, 'restart', e.startMs);
      }),
    );
    const failed = (e: EventBase & { error: { code: string } }) => {
      const l = this.#labels(e);
      if (l !== undefined) this.#loadFailures.inc({ ...l, code: e.error.code });
    };
    on.push(subscribeEvent('reed:plugin:failed', failed));
    on.push(subscribeEvent('reed:plugin:upgrade-failed', failed));
    on.push(
      subscribeEvent('reed:sandbox:crashed', (e) => {
        const l = this.#labels(e);
        if (l !== undefined) this.#crashes.inc({ ...l, code: e.error.code });
      }),
    );
    const breaker = (state: keyof typeof BREAKER) => (e: EventBase) => {
      const l = this.#labels(e);
      if (l !== undefined) this.#breaker.set(l, BREAKER[state]);
    };
    on.push(subscribeEvent('reed:breaker:opened', breaker('open')));
    on.push(subscribeEvent('reed:breaker:half-open', breaker('half-open')));
    on.push(subscribeEvent('reed:breaker:closed', breaker('closed')));
    on.push(
      subscribeEvent('reed:plugin:removed', (e) => {
        const l = this.#labels(e);
        if (l !== undefined) this.#breaker.remove(l);
      }),
    );
    on.push(
      subscribeImageBuilt((e) => {
        this.#builds.inc({ kind: e.kind, code: e.code });
        if (e.code === 'ok') this.#buildSeconds.observe({ kind: e.kind }, e.durationMs / 1000);
      }),
    );
  }

  /** reed_calls_total, reed_call_duration_seconds and reed_fuel_consumed_total, from the call series. */
  #registerCalls(): void {
    const calls = this.#calls;
    const metric = (
      name: string,
      help: string,
      type: 'counter' | 'histogram',
      values: () => MetricValue<string>[],
    ) =>
      this.registry.registerMetric({
        name,
        help,
        type,
        get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
      } as unknown as Metric);
    metric(
      'reed_calls_total',
      'Calls through PluginHost.call, by outcome code (ok or the error code)',
      'counter',
      () =>
        [...calls.values()].flatMap((s) =>
          [...(s.ok > 0 ? [['ok', s.ok] as const] : []), ...s.codes].map(([code, value]) => ({
            labels: { ...s.labels, code },
            value,
          })),
        ),
    );
    metric(
      'reed_fuel_consumed_total',
      'WASM instructions charged to calls (0 where fuel does not apply)',
      'counter',
      () => [...calls.values()].map((s) => ({ labels: s.labels, value: s.fuel })),
    );
    metric(
      'reed_call_duration_seconds',
      'How long calls took, from PluginHost.call to their outcome, whatever it was',
      'histogram',
      () =>
        [...calls.values()].flatMap((s) => {
          const out: (MetricValue<string> & { metricName: string })[] = [];
          let cumulative = 0;
          CALL_BUCKETS.forEach((le, i) => {
            cumulative += s.buckets[i] as number;
            out.push({
              metricName: 'reed_call_duration_seconds_bucket',
              labels: { ...s.labels, le },
              value: cumulative,
            });
          });
          out.push({
            metricName: 'reed_call_duration_seconds_bucket',
            labels: { ...s.labels, le: '+Inf' },
            value: s.count,
          });
          out.push({ metricName: 'reed_call_duration_seconds_sum', labels: s.labels, value: s.sum });
          out.push({ metricName: 'reed_call_duration_seconds_count', labels: s.labels, value: s.count });
          return out;
        }),
    );
  }

  /** Gauges read from the hosts at each scrape: plugin states, memory, CPU, storage, quota rejections. */
  #registerScrapeTime(): void {
    const registers = [this.registry];
    const targets = () => [...this.#targets()];
    const self = this;
    new Gauge({
      name: 'reed_plugin_state',
      help: 'Each plugin known to a host: 1 for the state it is in (starting, ready, restarting, draining, failed, stopped)',
      labelNames: ['tenant', 'plugin', 'mode', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { tenant, host } of targets())
          for (const p of safe(() => host.status(), [])) {
            const plugin = self.#plugin(tenant, p.id);
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
            labels: { tenant, plugin: self.#plugin(tenant, p.id), mode: p.mode },
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
            if (bytes !== undefined) this.inc({ tenant, plugin: self.#plugin(tenant, p.id) }, bytes);
          }
      },
    });
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
}

/** A scrape never fails because one host is closing: what cannot be read is left out. */
function safe<T, F>(read: () => T, fallback: F): T | F {
  try {
    return read();
  } catch {
    return fallback;
  }
}
