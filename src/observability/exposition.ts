/**
 * Snapshot data model, merging across isolates, and the Prometheus text
 * exposition format 0.0.4.
 *
 * @module
 */

/** The three metric kinds this registry implements. */
export type MetricType = "counter" | "gauge" | "histogram";

/** How gauge values from several isolates are combined: summed (default), maximum, or last seen. */
export type GaugeAggregation = "sum" | "max" | "last";

/** One series of a snapshot. Counters and gauges use `value`; histograms the rest. */
export interface SeriesSnapshot {
  /** Label values in the order of the metric's `labelNames`. */
  labels: string[];
  value?: number;
  /** Per-bucket (non-cumulative) counts; one more entry than `buckets`, the last being `+Inf`. */
  counts?: number[];
  sum?: number;
  count?: number;
}

/** One metric of a snapshot. */
export interface MetricSnapshot {
  name: string;
  help: string;
  type: MetricType;
  labelNames: string[];
  /** Histograms only: upper bounds, ascending, without `+Inf`. */
  buckets?: number[];
  /** Gauges only. */
  aggregate?: GaugeAggregation;
  series: SeriesSnapshot[];
}

/** A registry's state as plain data, safe to `postMessage` between isolates. */
export interface MetricsSnapshot {
  metrics: MetricSnapshot[];
}

/**
 * Merges snapshots (one per isolate) and renders them as Prometheus text.
 * Counters and histograms are summed per label set; gauges follow their
 * `aggregate` mode. Metric order is first appearance; a metric whose type,
 * labels or buckets disagree with its first appearance is skipped in later
 * snapshots rather than failing the whole scrape.
 */
export function renderMerged(snapshots: readonly MetricsSnapshot[]): string {
  const merged = mergeSnapshots(snapshots);
  let out = "";
  for (const m of merged.metrics) out += renderMetric(m);
  return out;
}

/** Merges snapshots into one (see {@link renderMerged} for the rules). */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
  const byName = new Map<string, { metric: MetricSnapshot; series: Map<string, SeriesSnapshot> }>();
  for (const snap of snapshots) {
    for (const m of snap.metrics) {
      let entry = byName.get(m.name);
      if (entry === undefined) {
        entry = {
          metric: { ...m, labelNames: [...m.labelNames], buckets: m.buckets && [...m.buckets], series: [] },
          series: new Map(),
        };
        byName.set(m.name, entry);
      } else if (!compatible(entry.metric, m)) {
        continue;
      }
      for (const s of m.series) {
        const key = s.labels.join("\u0000");
        const prev = entry.series.get(key);
        if (prev === undefined) {
          const copy: SeriesSnapshot = { ...s, labels: [...s.labels], counts: s.counts && [...s.counts] };
          entry.series.set(key, copy);
          entry.metric.series.push(copy);
        } else {
          mergeSeries(entry.metric, prev, s);
        }
      }
    }
  }
  return { metrics: [...byName.values()].map((e) => e.metric) };
}

function compatible(a: MetricSnapshot, b: MetricSnapshot): boolean {
  return a.type === b.type && a.labelNames.join(",") === b.labelNames.join(",") &&
    (a.buckets ?? []).join(",") === (b.buckets ?? []).join(",");
}

function mergeSeries(m: MetricSnapshot, into: SeriesSnapshot, s: SeriesSnapshot): void {
  if (m.type === "histogram") {
    const a = into.counts!, b = s.counts!;
    for (let i = 0; i < a.length; i++) a[i] += b[i] ?? 0;
    into.sum = (into.sum ?? 0) + (s.sum ?? 0);
    into.count = (into.count ?? 0) + (s.count ?? 0);
    return;
  }
  const a = into.value ?? 0, b = s.value ?? 0;
  if (m.type === "gauge" && m.aggregate === "max") into.value = Math.max(a, b);
  else if (m.type === "gauge" && m.aggregate === "last") into.value = b;
  else into.value = a + b;
}

function renderMetric(m: MetricSnapshot): string {
  let out = `# HELP ${m.name} ${escapeHelp(m.help)}\n# TYPE ${m.name} ${m.type}\n`;
  for (const s of m.series) {
    const pairs = labelPairs(m.labelNames, s.labels);
    if (m.type !== "histogram") {
      out += `${m.name}${pairs ? `{${pairs}}` : ""} ${formatValue(s.value ?? 0)}\n`;
      continue;
    }
    const prefix = pairs ? `${pairs},` : "";
    const buckets = m.buckets ?? [];
    const counts = s.counts ?? [];
    let cumulative = 0;
    for (let i = 0; i < buckets.length; i++) {
      cumulative += counts[i] ?? 0;
      out += `${m.name}_bucket{${prefix}le="${formatValue(buckets[i])}"} ${formatValue(cumulative)}\n`;
    }
    cumulative += counts[buckets.length] ?? 0;
    out += `${m.name}_bucket{${prefix}le="+Inf"} ${formatValue(cumulative)}\n`;
    const tail = pairs ? `{${pairs}}` : "";
    out += `${m.name}_sum${tail} ${formatValue(s.sum ?? 0)}\n`;
    out += `${m.name}_count${tail} ${formatValue(s.count ?? 0)}\n`;
  }
  return out;
}

function labelPairs(names: readonly string[], values: readonly string[]): string {
  let out = "";
  for (let i = 0; i < names.length; i++) {
    if (i > 0) out += ",";
    out += `${names[i]}="${escapeLabelValue(values[i] ?? "")}"`;
  }
  return out;
}

/** Escapes a label value: backslash, double quote and newline (format 0.0.4). */
export function escapeLabelValue(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`) : v;
}

/** HELP text escapes only backslash and newline. */
function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

/** Formats a sample value: Go-style `+Inf`, `-Inf`, `NaN`, otherwise the shortest round-trip form. */
export function formatValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
