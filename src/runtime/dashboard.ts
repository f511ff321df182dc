/**
 * The dashboard's history, kept in the supervisor: every `sample_interval`
 * (default 10 s) the merged metrics of all workers (what /metrics shows)
 * become one sample of request rate, error rate and latency quantiles, the
 * differences of `loom_requests_total` and `loom_request_duration_seconds`
 * since the sample before; 90 samples are kept (15 minutes at 10 s). Config
 * reloads are remembered too (the last 20).
 *
 * @module
 */
import type { MetricSnapshot, MetricsSnapshot } from "../observability/exposition.ts";
import type { DashboardSample, DashboardTotals, ReloadRecord } from "../admin/dashboard.ts";

/** Samples kept. */
export const DASHBOARD_SAMPLES = 90;
/** Reloads kept. */
export const RELOADS_KEPT = 20;

/** Totals of the request series at one moment. */
interface Cumulative {
  time: number;
  requests: number;
  errors: number;
  /** Histogram buckets (non-cumulative, +Inf last) summed over every route and method. */
  buckets: number[];
  bounds: number[];
}

function metric(snap: MetricsSnapshot, name: string): MetricSnapshot | undefined {
  return snap.metrics.find((m) => m.name === name);
}

/** Request and 5xx counts and the summed latency histogram of a merged snapshot. */
export function cumulative(snap: MetricsSnapshot, time: number): Cumulative {
  let requests = 0, errors = 0;
  const total = metric(snap, "loom_requests_total");
  if (total !== undefined) {
    const si = total.labelNames.indexOf("status");
    for (const s of total.series) {
      const v = s.value ?? 0;
      requests += v;
      const status = Number(s.labels[si]);
      if (status >= 500 || status === 0) errors += v;
    }
  }
  const hist = metric(snap, "loom_request_duration_seconds");
  const bounds = hist?.buckets ?? [];
  const buckets = new Array(bounds.length + 1).fill(0);
  for (const s of hist?.series ?? []) {
    s.counts?.forEach((c, i) => buckets[i] += c);
  }
  return { time, requests, errors, buckets, bounds };
}

/**
 * The q-quantile of a histogram (non-cumulative `counts`, +Inf last) in
 * seconds, interpolated linearly within its bucket as Prometheus'
 * histogram_quantile does; NaN without observations.
 */
export function histogramQuantile(q: number, bounds: readonly number[], counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return NaN;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (seen + c >= rank && c > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? NaN; // +Inf: the highest finite bound
      const lo = i === 0 ? 0 : bounds[i - 1];
      return lo + (bounds[i] - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds[bounds.length - 1] ?? NaN;
}

/** The ring of samples and the reload history. */
export class DashboardHistory {
  readonly samples: DashboardSample[] = [];
  readonly reloads: ReloadRecord[] = [];
  #last: Cumulative | null = null;
  #totals: DashboardTotals = { requests: 0, errors: 0 };

  /** Adds the sample from `snap` (the first one only sets the baseline). */
  sample(snap: MetricsSnapshot, time = Date.now()): void {
    const now = cumulative(snap, time);
    this.#totals = { requests: now.requests, errors: now.errors };
    const prev = this.#last;
    this.#last = now;
    if (prev === null || now.time <= prev.time) return;
    const seconds = (now.time - prev.time) / 1000;
    // A counter that went down (a worker restarted): this interval starts from zero.
    const reqs = now.requests >= prev.requests ? now.requests - prev.requests : now.requests;
    const errs = now.errors >= prev.errors ? now.errors - prev.errors : now.errors;
    const same = prev.buckets.length === now.buckets.length;
    const delta = now.buckets.map((c, i) => Math.max(0, c - (same ? prev.buckets[i] : 0)));
    const q = (x: number) => {
      const v = histogramQuantile(x, now.bounds, delta);
      return Number.isNaN(v) ? null : v;
    };
    this.samples.push({
      t: now.time,
      rps: reqs / seconds,
      error_rate: reqs > 0 ? errs / reqs : 0,
      errors_per_s: errs / seconds,
      p50: q(0.5),
      p95: q(0.95),
      p99: q(0.99),
    });
    if (this.samples.length > DASHBOARD_SAMPLES) this.samples.shift();
  }

  /** Request and error totals at the last sample. */
  get totals(): DashboardTotals {
    return this.#totals;
  }

  /** Remembers a reload's outcome. */
  reload(r: ReloadRecord): void {
    this.reloads.unshift(r);
    if (this.reloads.length > RELOADS_KEPT) this.reloads.pop();
  }
}
