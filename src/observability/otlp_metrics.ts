/**
 * OTLP/HTTP export of the metrics, beside Prometheus (`metrics.opentelemetry:
 * {enabled, endpoint, interval}`): every `interval` the supervisor's merged
 * snapshot (all workers, as /metrics shows it) is sent as OTLP JSON to
 * `<endpoint>/v1/metrics`. Counters become cumulative monotonic sums, gauges
 * gauges, histograms explicit-bucket histograms; names and labels are kept.
 *
 * @module
 */
import type { MetricSnapshot, MetricsSnapshot } from "./exposition.ts";
import { type OtlpMetricsConfig, otlpUrl } from "../config/observability.ts";
import { logger } from "./logger.ts";
import { VERSION } from "../version.ts";

/** Default time between exports, ms. */
export const DEFAULT_OTLP_METRICS_INTERVAL = 15_000;

type Attr = { key: string; value: { stringValue: string } };

function attributes(m: MetricSnapshot, labels: readonly string[]): Attr[] {
  return m.labelNames.map((k, i) => ({ key: k, value: { stringValue: labels[i] ?? "" } }));
}

const nanos = (ms: number) => BigInt(Math.round(ms * 1e6)).toString();

/** One metric as OTLP JSON (null for an unknown type). */
function metricJson(m: MetricSnapshot, start: string, now: string): Record<string, unknown> | null {
  const base = { name: m.name, description: m.help };
  switch (m.type) {
    case "counter":
      return {
        ...base,
        sum: {
          aggregationTemporality: 2, // cumulative
          isMonotonic: true,
          dataPoints: m.series.map((s) => ({
            attributes: attributes(m, s.labels),
            startTimeUnixNano: start,
            timeUnixNano: now,
            asDouble: s.value ?? 0,
          })),
        },
      };
    case "gauge":
      return {
        ...base,
        gauge: {
          dataPoints: m.series.map((s) => ({
            attributes: attributes(m, s.labels),
            timeUnixNano: now,
            asDouble: s.value ?? 0,
          })),
        },
      };
    case "histogram":
      return {
        ...base,
        histogram: {
          aggregationTemporality: 2,
          dataPoints: m.series.map((s) => ({
            attributes: attributes(m, s.labels),
            startTimeUnixNano: start,
            timeUnixNano: now,
            count: String(s.count ?? 0),
            sum: s.sum ?? 0,
            bucketCounts: (s.counts ?? []).map((c) => String(c)),
            explicitBounds: m.buckets ?? [],
          })),
        },
      };
    default:
      return null;
  }
}

/** A merged snapshot as an OTLP `ExportMetricsServiceRequest` (JSON). */
export function otlpMetricsRequest(
  snap: MetricsSnapshot,
  serviceName: string,
  startMs: number,
  nowMs: number,
): Record<string, unknown> {
  const start = nanos(startMs);
  const now = nanos(nowMs);
  const metrics = snap.metrics.map((m) => metricJson(m, start, now)).filter((m) => m !== null);
  return {
    resourceMetrics: [{
      resource: {
        attributes: [
          { key: "service.name", value: { stringValue: serviceName } },
          { key: "service.version", value: { stringValue: VERSION } },
        ],
      },
      scopeMetrics: [{ scope: { name: "loom", version: VERSION }, metrics }],
    }],
  };
}

/** Sends the merged metrics every interval (a missed export is logged once per failure streak). */
export class OtlpMetricsExporter {
  readonly url: string;
  readonly #interval: number;
  readonly #collect: () => Promise<MetricsSnapshot>;
  readonly #service: string;
  readonly #start = Date.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  #failing = false;
  #running: Promise<void> | null = null;

  constructor(cfg: OtlpMetricsConfig, collect: () => Promise<MetricsSnapshot>, serviceName = "loom") {
    this.url = otlpUrl(cfg.endpoint, "metrics");
    this.#interval = Math.max(100, cfg.interval ?? DEFAULT_OTLP_METRICS_INTERVAL);
    this.#collect = collect;
    this.#service = serviceName;
  }

  /** Starts the periodic export. */
  start(): void {
    if (this.#timer !== undefined) return;
    const timer = setInterval(() => void this.export(), this.#interval);
    Deno.unrefTimer(timer);
    this.#timer = timer;
    logger.info("metrics: exporting OTLP", { endpoint: this.url, interval_ms: this.#interval });
  }

  /** One export now (exports never overlap). */
  export(): Promise<void> {
    this.#running ??= this.#send().finally(() => this.#running = null);
    return this.#running;
  }

  async #send(): Promise<void> {
    try {
      const body = otlpMetricsRequest(await this.#collect(), this.#service, this.#start, Date.now());
      const res = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      if (this.#failing) logger.info("metrics: OTLP export works again", { endpoint: this.url });
      this.#failing = false;
    } catch (e) {
      if (!this.#failing) {
        logger.warn("metrics: OTLP export failed", { endpoint: this.url, error: String(e) });
      }
      this.#failing = true;
    }
  }

  /** Stops; with `flush`, one last export first. */
  async stop(flush: boolean): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (flush) await this.export();
  }
}
