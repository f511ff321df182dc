/**
 * A tiny Prometheus registry (text exposition format 0.0.4).
 *
 * Built for the request hot path: callers bind label values once with
 * `labels(...)` and keep the child, so recording is a number add (counters) or
 * a short bucket scan plus two adds (histograms). Worker isolates export
 * {@link MetricsSnapshot}s (plain, structured-clonable data) which the main
 * isolate merges with {@link renderMerged}.
 *
 * @module
 */

import {
  escapeLabelValue,
  formatValue,
  type GaugeAggregation,
  mergeSnapshots,
  type MetricSnapshot,
  type MetricsSnapshot,
  type MetricType,
  renderMerged,
  type SeriesSnapshot,
} from "./exposition.ts";

/** Prometheus' default latency buckets, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A label value; numbers (e.g. status codes) are rendered with `String()`. */
export type LabelValue = string | number;

/** Options of {@link Registry.gauge}. */
export interface GaugeOptions {
  /** How values from several isolates are merged. Default "sum". */
  aggregate?: GaugeAggregation;
  /**
   * Computes the gauge's series at snapshot/render time (e.g. pool sizes),
   * instead of tracking them with set/inc/dec.
   */
  collect?: () => Array<[Record<string, LabelValue>, number]>;
}

// Re-exported so callers need only this module.
export type { GaugeAggregation, MetricSnapshot, MetricsSnapshot, MetricType, SeriesSnapshot };
export { escapeLabelValue, formatValue, mergeSnapshots, renderMerged };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Children are found through one Map level per label, so lookups never build a joined key string. */
type Tree<C> = Map<LabelValue, Tree<C> | C>;

/** Shared label-binding machinery of counters, gauges and histograms. */
abstract class Metric<C> {
  /** Children in creation order (render order). */
  readonly children: Array<{ labels: string[]; child: C }> = [];
  readonly #tree: Tree<C> = new Map();
  /** Dedupes children reached through differently typed values, e.g. 200 and "200". */
  readonly #byKey = new Map<string, C>();
  #noLabels: C | undefined;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract create(): C;

  /**
   * The child bound to these label values (created on first use). Keep the
   * result when possible; repeated calls cost one Map lookup per label.
   */
  labels(...values: LabelValue[]): C {
    const n = this.labelNames.length;
    if (values.length !== n) {
      throw new Error(`${this.name}: expected ${n} label values, got ${values.length}`);
    }
    if (n === 0) return this.#noLabels ??= this.#add([]);
    let node = this.#tree;
    for (let i = 0; i < n - 1; i++) {
      let next = node.get(values[i]) as Tree<C> | undefined;
      if (next === undefined) node.set(values[i], next = new Map());
      node = next;
    }
    let child = node.get(values[n - 1]) as C | undefined;
    if (child === undefined) {
      const strings = values.map(String);
      const key = strings.join("\u0000");
      child = this.#byKey.get(key);
      if (child === undefined) {
        child = this.#add(strings);
        this.#byKey.set(key, child);
      }
      node.set(values[n - 1], child);
    }
    return child;
  }

  #add(labels: string[]): C {
    const child = this.create();
    this.children.push({ labels, child });
    return child;
  }

  abstract snapshot(): MetricSnapshot;
}

/** A counter bound to one label set. */
export class CounterChild {
  /** Current value; monotonic. */
  value = 0;
  /** Adds `n` (default 1); negative amounts are ignored because counters only go up. */
  inc(n = 1): void {
    if (n > 0) this.value += n;
  }
}

/** A monotonically increasing counter. */
export class Counter extends Metric<CounterChild> {
  protected create(): CounterChild {
    return new CounterChild();
  }
  /** Increments the unlabelled series. */
  inc(n = 1): void {
    this.labels().inc(n);
  }
  /** This counter as plain data. */
  snapshot(): MetricSnapshot {
    return {
      name: this.name,
      help: this.help,
      type: "counter",
      labelNames: [...this.labelNames],
      series: this.children.map(({ labels, child }) => ({ labels: [...labels], value: child.value })),
    };
  }
}

/** A gauge bound to one label set. */
export class GaugeChild {
  /** Current value. */
  value = 0;
  /** Sets the value. */
  set(v: number): void {
    this.value = v;
  }
  /** Adds `n` (default 1). */
  inc(n = 1): void {
    this.value += n;
  }
  /** Subtracts `n` (default 1). */
  dec(n = 1): void {
    this.value -= n;
  }
}

/** A value that can go up and down, tracked or computed by a callback. */
export class Gauge extends Metric<GaugeChild> {
  constructor(name: string, help: string, labelNames: readonly string[], readonly options: GaugeOptions) {
    super(name, help, labelNames);
  }
  protected create(): GaugeChild {
    return new GaugeChild();
  }
  /** Sets the unlabelled series. */
  set(v: number): void {
    this.labels().set(v);
  }
  /** This gauge as plain data; runs the `collect` callback if any. */
  snapshot(): MetricSnapshot {
    const series: SeriesSnapshot[] = this.children.map(({ labels, child }) => ({
      labels: [...labels],
      value: child.value,
    }));
    if (this.options.collect) {
      for (const [labels, value] of this.options.collect()) {
        series.push({ labels: this.labelNames.map((n) => String(labels[n] ?? "")), value });
      }
    }
    return {
      name: this.name,
      help: this.help,
      type: "gauge",
      labelNames: [...this.labelNames],
      aggregate: this.options.aggregate ?? "sum",
      series,
    };
  }
}

/** A histogram bound to one label set. */
export class HistogramChild {
  /** Non-cumulative counts per bucket; the last slot is `+Inf`. */
  readonly counts: Float64Array;
  /** Sum of observed values. */
  sum = 0;
  /** Number of observations. */
  count = 0;

  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one observation. */
  observe(v: number): void {
    const b = this.bounds;
    const n = b.length;
    let i: number;
    if (n <= 16) {
      // Linear scan wins for the usual ~11 buckets: latencies mostly land early.
      i = 0;
      while (i < n && v > b[i]) i++;
    } else {
      let lo = 0, hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (v > b[mid]) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/** A histogram with fixed buckets. */
export class Histogram extends Metric<HistogramChild> {
  readonly #bounds: Float64Array;
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    this.#bounds = Float64Array.from(buckets);
  }
  protected create(): HistogramChild {
    return new HistogramChild(this.#bounds);
  }
  /** Observes into the unlabelled series. */
  observe(v: number): void {
    this.labels().observe(v);
  }
  /** This histogram as plain data. */
  snapshot(): MetricSnapshot {
    return {
      name: this.name,
      help: this.help,
      type: "histogram",
      labelNames: [...this.labelNames],
      buckets: [...this.buckets],
      series: this.children.map(({ labels, child }) => ({
        labels: [...labels],
        counts: Array.from(child.counts),
        sum: child.sum,
        count: child.count,
      })),
    };
  }
}

/** A set of metrics rendered together. */
export class Registry {
  readonly #metrics = new Map<string, Metric<unknown>>();

  /** Registers a counter. Names must be unique within the registry. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#register(new Counter(name, help, checkLabels(name, labelNames)));
  }

  /** Registers a gauge, optionally computed by `options.collect`. */
  gauge(name: string, help: string, labelNames: readonly string[] = [], options: GaugeOptions = {}): Gauge {
    return this.#register(new Gauge(name, help, checkLabels(name, labelNames), options));
  }

  /** Registers a histogram; `buckets` default to {@link DEFAULT_BUCKETS}. */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = DEFAULT_BUCKETS,
  ): Histogram {
    checkLabels(name, labelNames);
    if (labelNames.includes("le")) throw new Error(`${name}: "le" is reserved in histograms`);
    const sorted = [...new Set(buckets.filter((b) => b !== Infinity))].sort((a, b) => a - b);
    if (sorted.some((b) => Number.isNaN(b))) throw new Error(`${name}: NaN bucket`);
    return this.#register(new Histogram(name, help, labelNames, sorted));
  }

  /** All metrics as plain data (structured-clonable). */
  snapshot(): MetricsSnapshot {
    return { metrics: [...this.#metrics.values()].map((m) => m.snapshot()) };
  }

  /** Text exposition of this registry alone. */
  render(): string {
    return renderMerged([this.snapshot()]);
  }

  #register<M extends Metric<unknown>>(metric: M): M {
    if (!METRIC_NAME.test(metric.name)) throw new Error(`invalid metric name ${JSON.stringify(metric.name)}`);
    if (this.#metrics.has(metric.name)) throw new Error(`metric ${metric.name} already registered`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }
}

function checkLabels(metric: string, labelNames: readonly string[]): readonly string[] {
  for (const l of labelNames) {
    if (!LABEL_NAME.test(l) || l.startsWith("__")) {
      throw new Error(`${metric}: invalid label name ${JSON.stringify(l)}`);
    }
  }
  if (new Set(labelNames).size !== labelNames.length) throw new Error(`${metric}: duplicate label names`);
  return [...labelNames];
}
