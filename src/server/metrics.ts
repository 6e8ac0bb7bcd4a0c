// Prometheus metrics (issue 15), every figure from the events (src/events/: the one source for logs, metrics and
// the API) or read from the hosts at scrape time. docs/OPERATIONS.md lists them. The parts: metric-labels.ts (the
// bounded labels), call-metrics.ts (calls, durations, fuel: the call path), this file (the registry, and the
// lifecycle's counters and gauges from their events), scrape-gauges.ts and tenant-disk.ts (states, memory, CPU,
// storage, disk, quota rejections, read from the hosts at scrape); metrics-server.ts serves a scrape over TCP.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  type EventBase,
  subscribeCallRecorder,
  subscribeEvent,
  subscribeImageBuilt,
} from '../events/events.js';
import { LOADER_VERSION } from '../version.js';
import { CallMetrics } from './call-metrics.js';
import { type LabelOptions, MetricLabels } from './metric-labels.js';
import { type MetricsTarget, registerScrapeGauges } from './scrape-gauges.js';
import type { TenantDiskOptions } from './tenant-disk.js';

export { CALL_BUCKETS } from './call-metrics.js';
export { DEFAULT_MAX_PLUGINS, DEFAULT_TENANT_LABEL, NO_PLUGIN, OTHER_PLUGIN } from './metric-labels.js';
export type { MetricsTarget } from './scrape-gauges.js';

export interface MetricsOptions extends LabelOptions {
  /** The hosts whose plugins' states, memory, CPU, storage and disk are read at each scrape. */
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
  /** How often each tenant's disk is walked, and how many entries one scrape reads at most (tenant-disk.ts). */
  disk?: TenantDiskOptions;
}

/** Seconds: a WASM instance in milliseconds, a runner in ~100 ms, a container in seconds (an image build more). */
export const START_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
export const BUILD_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1200];

const BREAKER = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * The metrics of the hosts `targets()` lists, in a prom-client Registry of their own (`registry`; never the global
 * one). Subscribes to the events when made; `close()` unsubscribes.
 */
export class ReedMetrics {
  readonly registry = new Registry();
  readonly #labels: MetricLabels;
  readonly #calls: CallMetrics;
  /** Runtime (wasm, native) by `session\nplugin`, from its last load or upgrade. */
  readonly #runtimes = new Map<string, string>();
  readonly #unsubscribes: (() => void)[] = [];

  readonly #starts: Counter<'tenant' | 'plugin' | 'mode' | 'runtime' | 'reason'>;
  readonly #coldStart: Histogram<'tenant' | 'plugin' | 'mode' | 'reason'>;
  readonly #crashes: Counter<'tenant' | 'plugin' | 'mode' | 'code'>;
  readonly #loadFailures: Counter<'tenant' | 'plugin' | 'mode' | 'code'>;
  readonly #breaker: Gauge<'tenant' | 'plugin' | 'mode'>;
  readonly #builds: Counter<'kind' | 'code'>;
  readonly #buildSeconds: Histogram<'kind'>;

  constructor(options: MetricsOptions) {
    this.#labels = new MetricLabels(options);
    const registers = [this.registry];
    new Gauge({
      name: 'reed_build_info',
      help: 'Always 1: the loader version and the Node.js version serving',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version: LOADER_VERSION, node_version: process.versions.node }, 1);
    this.#calls = new CallMetrics(this.registry, this.#labels);
    this.#starts = new Counter({
      name: 'reed_sandbox_starts_total',
      help: 'Sandboxes started, by reason: first_load (a load or reload), upgrade (a new version), restart (after a crash), wake (an idle plugin called)',
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
    registerScrapeGauges(this.registry, this.#labels, options.targets, options.disk);
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

  /** The runtime its last load or upgrade said (`unknown` before either). */
  #runtime(event: EventBase & { runtime?: string }): string {
    const key = `${event.session}\n${event.pluginId}`;
    if (event.runtime !== undefined) {
      if (this.#runtimes.size >= 10 * this.#labels.maxPlugins) this.#runtimes.clear();
      this.#runtimes.set(key, event.runtime);
    }
    return this.#runtimes.get(key) ?? 'unknown';
  }

  #subscribe(): void {
    const on = this.#unsubscribes;
    const labels = this.#labels;
    const calls = this.#calls;
    on.push(subscribeCallRecorder(calls));
    const started = (e: EventBase & { runtime?: string }, reason: string, startMs: number | undefined) => {
      const l = labels.of(e);
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
    // Scale to zero: a wake is a start (its cold start from the call that woke it to ready).
    on.push(subscribeEvent('reed:sandbox:woke', (e) => started(e, 'wake', e.wakeMs)));
    const failed = (e: EventBase & { error: { code: string } }) => {
      const l = labels.of(e);
      if (l !== undefined) this.#loadFailures.inc({ ...l, code: e.error.code });
    };
    on.push(subscribeEvent('reed:plugin:failed', failed));
    on.push(subscribeEvent('reed:plugin:upgrade-failed', failed));
    on.push(
      subscribeEvent('reed:sandbox:crashed', (e) => {
        const l = labels.of(e);
        if (l !== undefined) this.#crashes.inc({ ...l, code: e.error.code });
      }),
    );
    const breaker = (state: keyof typeof BREAKER) => (e: EventBase) => {
      const l = labels.of(e);
      if (l !== undefined) this.#breaker.set(l, BREAKER[state]);
    };
    on.push(subscribeEvent('reed:breaker:opened', breaker('open')));
    on.push(subscribeEvent('reed:breaker:half-open', breaker('half-open')));
    on.push(subscribeEvent('reed:breaker:closed', breaker('closed')));
    on.push(
      subscribeEvent('reed:plugin:removed', (e) => {
        const l = labels.of(e);
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
}
