// The call metrics (reed_calls_total, reed_call_duration_seconds, reed_fuel_consumed_total), from
// `reed:call:finished`: every call's path, so a call only adds to plain numbers of its series (kept for the same
// plugin as the last call without a key built); the Prometheus series are made from them at scrape.
import type { Metric, MetricValue, Registry } from 'prom-client';
import type { CallFinishedEvent, CallRecorder, CallSink } from '../events/events.js';
import type { SandboxMode } from '../manifest/types.js';
import { type MetricLabels, NO_PLUGIN, OTHER_PLUGIN, type PluginLabels } from './metric-labels.js';

/** Seconds. A mode-none call takes microseconds, a process call ~100 us, a container one more; deadlines are seconds. */
export const CALL_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1, 2.5, 5, 10, 30,
];

/** CALL_BUCKETS as a typed array: the plain array was read again at each bound, with its map and length checks. */
const BOUNDS = Float64Array.from(CALL_BUCKETS);

/**
 * The calls of one (tenant, plugin, mode): plain numbers on the call path, turned into series at scrape. A call adds
 * to its bucket, the sum and the fuel, and a failed one to its code; the count (the buckets' total) and the calls
 * that succeeded (the count less the failures) are worked out at scrape, not counted on every call.
 */
class CallSeries implements CallSink {
  /** The calls that failed, by code. */
  readonly codes = new Map<string, number>();
  /** Per bucket (not cumulative), and one more for +Inf. */
  readonly buckets = new Float64Array(CALL_BUCKETS.length + 1);
  sum = 0;
  fuel = 0;

  constructor(readonly labels: PluginLabels) {}

  /** What a finished call records, from its event (CallMetrics.onCall) or directly (a mode-none call, Generation). */
  add(code: string, durationMs: number, fuelConsumed: number): void {
    if (code !== 'ok') this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
    const seconds = durationMs / 1000;
    const buckets = this.buckets;
    const bounds = BOUNDS;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    buckets[i] = (buckets[i] as number) + 1;
    this.sum += seconds;
    this.fuel += fuelConsumed;
  }
}

/** The calls of a series: its buckets' total. */
function countOf(series: CallSeries): number {
  let count = 0;
  for (const n of series.buckets) count += n;
  return count;
}

/** The calls of a series that succeeded: all but those that failed. */
function okOf(series: CallSeries): number {
  let failed = 0;
  for (const n of series.codes.values()) failed += n;
  return countOf(series) - failed;
}

export class CallMetrics implements CallRecorder {
  readonly #labels: MetricLabels;
  readonly #calls = new Map<string, CallSeries>();
  /**
   * The last call's host, plugin, mode and tenant, and its series: fields of their own (not an object holding them,
   * whose loads V8 had made polymorphic beside the event's of the same names).
   */
  #lastSession: string | undefined = undefined;
  #lastPluginId: string | undefined = undefined;
  #lastMode: string | undefined = undefined;
  #lastTenant: string | undefined = undefined;
  #lastSeries: CallSeries | undefined = undefined;
  constructor(registry: Registry, labels: MetricLabels) {
    this.#labels = labels;
    this.#register(registry);
  }

  /**
   * The call path: a comparison with the last call's source (or a map lookup) and a few additions. A property, not a
   * method: it is the channel's subscriber itself, without a closure around it.
   */
  readonly onCall = (event: CallFinishedEvent): void => {
    let series = this.#lastSeries;
    if (
      series === undefined ||
      event.session !== this.#lastSession ||
      event.pluginId !== this.#lastPluginId ||
      event.mode !== this.#lastMode ||
      event.tenant !== this.#lastTenant
    )
      series = this.#seriesOf(event);
    if (series !== undefined) series.add(event.code, event.durationMs, event.fuelConsumed);
  };

  /** CallRecorder's: the series a call settled at once adds to without its event (see events.ts). */
  sinkOf(
    session: string,
    tenant: string | undefined,
    pluginId: string,
    mode: SandboxMode,
  ): CallSink | undefined {
    return this.#seriesOf({ session, tenant, pluginId, mode });
  }

  /** The series of a call's labels, made on its first call; undefined for a host this registry does not count. */
  #seriesOf(
    event: Pick<CallFinishedEvent, 'session' | 'tenant' | 'pluginId' | 'mode'>,
  ): CallSeries | undefined {
    const tenant = this.#labels.tenantOf(event);
    if (tenant === null) return undefined;
    // A call to an id no host loaded has no mode: one series for all of them, whatever id the caller sent.
    // Keyed by the labels: hosts that come and go (a tenant's host restarted) add to the same series.
    let key = `${tenant}\n${event.mode === undefined ? NO_PLUGIN : event.pluginId}\n${event.mode}`;
    let series = this.#calls.get(key);
    if (series === undefined) {
      const plugin = event.mode === undefined ? NO_PLUGIN : this.#labels.plugin(tenant, event.pluginId);
      if (plugin === OTHER_PLUGIN) {
        key = `${tenant}\n${OTHER_PLUGIN}\n${event.mode}`;
        series = this.#calls.get(key);
      }
      if (series === undefined) {
        series = new CallSeries({ tenant, plugin, mode: event.mode ?? 'none' });
        this.#calls.set(key, series);
      }
    }
    this.#lastSession = event.session;
    this.#lastPluginId = event.pluginId;
    this.#lastMode = event.mode;
    this.#lastTenant = event.tenant;
    this.#lastSeries = series;
    return series;
  }

  #register(registry: Registry): void {
    const calls = this.#calls;
    const metric = (
      name: string,
      help: string,
      type: 'counter' | 'histogram',
      values: () => MetricValue<string>[],
    ) =>
      registry.registerMetric({
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
        [...calls.values()].flatMap((s) => {
          const ok = okOf(s);
          return [...(ok > 0 ? [['ok', ok] as const] : []), ...s.codes].map(([code, value]) => ({
            labels: { ...s.labels, code },
            value,
          }));
        }),
    );
    metric(
      'reed_fuel_consumed_total',
      'WASM instructions charged to calls (0 where fuel does not apply)',
      'counter',
      () => [...calls.values()].map((s) => ({ labels: { ...s.labels }, value: s.fuel })),
    );
    metric(
      'reed_call_duration_seconds',
      'How long calls took, from PluginHost.call to their outcome, whatever it was',
      'histogram',
      () =>
        [...calls.values()].flatMap((s) => {
          const count = countOf(s);
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
            value: count,
          });
          out.push({ metricName: 'reed_call_duration_seconds_sum', labels: { ...s.labels }, value: s.sum });
          out.push({
            metricName: 'reed_call_duration_seconds_count',
            labels: { ...s.labels },
            value: count,
          });
          return out;
        }),
    );
  }
}
