import { request } from 'node:http';
import { ReedError } from '../errors.js';
import type { PluginStatus } from '../host/plugin-status.js';
import { type ApiTarget, apiRequest } from './api-client.js';
import { parseSamples, type Sample } from './prom-text.js';

/** The largest /metrics answer read (1000 plugins' series are a few MB). */
const MAX_METRICS_BYTES = 64 * 1024 * 1024;

/** One plugin's row of `status --watch`: rates and quantiles over the last interval (null on the first frame). */
export interface WatchRow {
  id: string;
  state: string;
  mode: string;
  callsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  errorsPerSecond: number | null;
  restarts: number;
  memoryBytes: number | null;
}

/** What one plugin's series add up to at one scrape. */
interface Totals {
  calls: number;
  errors: number;
  /** Cumulative count per upper bound (seconds), +Inf included. */
  buckets: Map<number, number>;
  restarts: number;
  memory: number | null;
}

/** GET /metrics's text from a serve (an admin route: the token when tokens are on). */
export function metricsText(target: ApiTarget): Promise<string> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> =
      target.token === undefined ? {} : { Authorization: `Bearer ${target.token}` };
    const unreachable = (why: string) =>
      new ReedError('api_unreachable', `no reed-plugins serve answers on ${target.socketPath}: ${why}`);
    const req = request(
      { socketPath: target.socketPath, method: 'GET', path: '/metrics', headers },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_METRICS_BYTES) {
            req.destroy();
            reject(unreachable(`the metrics are larger than ${MAX_METRICS_BYTES} bytes`));
          } else chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) return resolve(text);
          let error: { code?: string; message?: string } | undefined;
          try {
            error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
          } catch {}
          const code = error?.code;
          reject(
            code === 'unauthenticated' || code === 'forbidden'
              ? new ReedError(code, `GET /metrics: ${error?.message ?? code}`)
              : unreachable(`GET /metrics answered ${res.statusCode}`),
          );
        });
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => reject(unreachable(error.code ?? error.message)));
    req.end();
  });
}

function totalsOf(samples: Sample[], tenant: string): Map<string, Totals> {
  const out = new Map<string, Totals>();
  const of = (plugin: string) => {
    let t = out.get(plugin);
    if (t === undefined) {
      t = { calls: 0, errors: 0, buckets: new Map(), restarts: 0, memory: null };
      out.set(plugin, t);
    }
    return t;
  };
  for (const s of samples) {
    const plugin = s.labels.plugin;
    if (plugin === undefined || s.labels.tenant !== tenant || !Number.isFinite(s.value)) continue;
    if (s.name === 'reed_calls_total') {
      of(plugin).calls += s.value;
      if (s.labels.code !== 'ok') of(plugin).errors += s.value;
    } else if (s.name === 'reed_call_duration_seconds_bucket') {
      const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      const buckets = of(plugin).buckets;
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    } else if (s.name === 'reed_sandbox_starts_total' && s.labels.reason === 'restart') {
      of(plugin).restarts += s.value;
    } else if (s.name === 'reed_sandbox_memory_bytes') {
      of(plugin).memory = (of(plugin).memory ?? 0) + s.value;
    }
  }
  return out;
}

/** Prometheus's histogram_quantile over cumulative bucket counts (linear within the bucket), in milliseconds. */
export function quantileMs(q: number, buckets: [number, number][]): number | null {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (!Number.isFinite(le)) return lower * 1000;
      const inBucket = count - below;
      return (lower + (le - lower) * (inBucket === 0 ? 1 : (rank - below) / inBucket)) * 1000;
    }
    lower = Number.isFinite(le) ? le : lower;
    below = count;
  }
  return lower * 1000;
}

/** One frame's rows from the plugins' status and two scrapes `seconds` apart (no previous scrape: no rates). */
export function watchRows(
  plugins: PluginStatus[],
  now: Sample[],
  before: Sample[] | undefined,
  seconds: number,
  tenant = 'default',
): WatchRow[] {
  const current = totalsOf(now, tenant);
  const previous = before === undefined ? undefined : totalsOf(before, tenant);
  return plugins.map((p) => {
    const t = current.get(p.id);
    const b = previous?.get(p.id) ?? { calls: 0, errors: 0, buckets: new Map(), restarts: 0, memory: null };
    const rated = previous !== undefined && seconds > 0;
    const delta: [number, number][] = [...(t?.buckets ?? new Map<number, number>())].map(([le, n]) => [
      le,
      n - (b.buckets.get(le) ?? 0),
    ]);
    return {
      id: p.id,
      state: p.state,
      mode: p.mode,
      callsPerSecond: rated ? ((t?.calls ?? 0) - b.calls) / seconds : null,
      p50Ms: rated ? quantileMs(0.5, delta) : null,
      p99Ms: rated ? quantileMs(0.99, delta) : null,
      errorsPerSecond: rated ? ((t?.errors ?? 0) - b.errors) / seconds : null,
      restarts: t?.restarts ?? 0,
      memoryBytes: t?.memory ?? null,
    };
  });
}

const num = (n: number | null, digits = 1) => (n === null ? '-' : n.toFixed(digits));
const bytes = (n: number | null) =>
  n === null ? '-' : n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)}G` : `${(n / (1 << 20)).toFixed(1)}M`;

/** The table's header and cells. */
export function watchCells(rows: WatchRow[]): { header: string[]; cells: string[][] } {
  return {
    header: ['ID', 'STATE', 'MODE', 'CALLS/S', 'P50 MS', 'P99 MS', 'ERRORS/S', 'RESTARTS', 'MEMORY'],
    cells: rows.map((r) => [
      r.id,
      r.state,
      r.mode,
      num(r.callsPerSecond),
      num(r.p50Ms, 2),
      num(r.p99Ms, 2),
      num(r.errorsPerSecond),
      String(r.restarts),
      bytes(r.memoryBytes),
    ]),
  };
}

/** One scrape: the plugins' status and the metrics' samples. */
export async function scrape(target: ApiTarget): Promise<{ plugins: PluginStatus[]; samples: Sample[] }> {
  const [answer, text] = await Promise.all([apiRequest(target, 'GET', '/v1/plugins'), metricsText(target)]);
  if (!answer.body.ok) {
    const error = answer.body.error;
    throw new ReedError(
      (error?.code ?? 'internal_error') as 'internal_error',
      `GET /v1/plugins: ${error?.message ?? answer.status}`,
    );
  }
  return { plugins: answer.body.plugins as PluginStatus[], samples: parseSamples(text) };
}
