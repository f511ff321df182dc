/**
 * Process and runtime series, refreshed when metrics are snapshot:
 *
 * - the process (main isolate only, once): `process_cpu_seconds_total`,
 *   `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
 *   `process_start_time_seconds`, as Prometheus client libraries name them;
 * - each isolate (main and every worker, summed or maxed on merge):
 *   `loom_runtime_heap_used_bytes`, `loom_runtime_heap_total_bytes` (V8),
 *   and `loom_runtime_event_loop_delay_seconds{quantile}` (p50, p99, max of
 *   the last ~10 s), from a timer drift sampler: a 20 ms interval timer
 *   records how late it fires; a busy event loop makes it late.
 *
 * @module
 */
import process from "node:process";
import type { Counter, Gauge, Registry } from "./metrics.ts";

/** The sampler's period, ms. */
export const LOOP_SAMPLE_MS = 20;
/** Samples kept: about 10 s. */
const LOOP_SAMPLES = 512;

/** How late an interval timer fires: the event loop's delay. */
export class LoopDelaySampler {
  readonly #samples = new Float64Array(LOOP_SAMPLES);
  #n = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #expected = 0;

  /** Starts sampling (the timer never keeps the process alive). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#expected = performance.now() + LOOP_SAMPLE_MS;
    const timer = setInterval(() => {
      const now = performance.now();
      this.#samples[this.#n++ % LOOP_SAMPLES] = Math.max(0, now - this.#expected);
      this.#expected = now + LOOP_SAMPLE_MS;
    }, LOOP_SAMPLE_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The q-quantiles (0..1) of the kept samples, in seconds (0 without samples). */
  quantiles(qs: readonly number[]): number[] {
    const n = Math.min(this.#n, LOOP_SAMPLES);
    if (n === 0) return qs.map(() => 0);
    const sorted = this.#samples.slice(0, n).sort();
    return qs.map((q) => sorted[Math.min(n - 1, Math.floor(q * n))] / 1000);
  }
}

const QUANTILES = [0.5, 0.99, 1] as const;
const QUANTILE_LABELS = ["0.5", "0.99", "1"];

/** The runtime series of one isolate (heap, event-loop delay). */
export class RuntimeMetrics {
  readonly #heapUsed: Gauge;
  readonly #heapTotal: Gauge;
  readonly #loop: Gauge;
  readonly sampler = new LoopDelaySampler();

  constructor(r: Registry) {
    this.#heapUsed = r.gauge("loom_runtime_heap_used_bytes", "V8 heap in use, summed over isolates.");
    this.#heapTotal = r.gauge("loom_runtime_heap_total_bytes", "V8 heap size, summed over isolates.");
    this.#loop = r.gauge(
      "loom_runtime_event_loop_delay_seconds",
      "Event-loop delay over the last ~10 s (a 20 ms timer's lateness), by quantile; the worst isolate.",
      ["quantile"],
      { aggregate: "max" },
    );
    this.sampler.start();
  }

  /** Sets the series to the current values (call before a snapshot). */
  update(): void {
    const m = Deno.memoryUsage();
    this.#heapUsed.set(m.heapUsed);
    this.#heapTotal.set(m.heapTotal);
    const q = this.sampler.quantiles(QUANTILES);
    for (let i = 0; i < q.length; i++) this.#loop.labels(QUANTILE_LABELS[i]).set(q[i]);
  }
}

/** Open file descriptors, or -1 where /proc is not there. */
function openFds(): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1; // the directory handle itself
  } catch {
    return -1;
  }
}

/** The soft limit on open files, or -1. */
function maxFds(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/** The process series (register in the main isolate only). */
export class ProcessMetrics {
  readonly #cpu: Counter;
  readonly #rss: Gauge;
  readonly #fds: Gauge;
  readonly #maxFds: Gauge;
  readonly #start: Gauge;

  constructor(r: Registry) {
    this.#cpu = r.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.");
    this.#rss = r.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", [], {
      aggregate: "max",
    });
    this.#fds = r.gauge("process_open_fds", "Number of open file descriptors.", [], { aggregate: "max" });
    this.#maxFds = r.gauge("process_max_fds", "Maximum number of open file descriptors.", [], {
      aggregate: "max",
    });
    this.#start = r.gauge(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      [],
      { aggregate: "max" },
    );
    // The main isolate starts with the process.
    this.#start.set(Math.floor(performance.timeOrigin) / 1000);
  }

  /** Sets the series to the current values (call before a snapshot). */
  update(): void {
    const cpu = process.cpuUsage();
    // Counters only go up through inc(): the OS total is the value.
    this.#cpu.labels().value = (cpu.user + cpu.system) / 1e6;
    this.#rss.set(Deno.memoryUsage().rss);
    const fds = openFds();
    if (fds >= 0) this.#fds.set(fds);
    const max = maxFds();
    if (max >= 0) this.#maxFds.set(max);
  }
}
