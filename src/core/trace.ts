/**
 * The request's trace as the layers see it (`ctx.trace`): set by the
 * `tracing` middleware (src/middleware/tracing/) for a sampled request, null
 * otherwise, so every instrumentation point costs one null test when
 * tracing is off or the request is not sampled. The OpenTelemetry side is
 * in src/observability/tracing.ts; nothing here imports it.
 *
 * @module
 */

/** A span attribute value. */
export type TraceValue = string | number | boolean;

/** One span of a request's trace. */
export interface TraceSpan {
  setAttribute(key: string, value: TraceValue): void;
  /** A timestamped event (`time`: performance.now() value; now when absent). */
  event(name: string, attributes?: Record<string, TraceValue>, time?: number): void;
  /** Marks the span failed (status ERROR) with `message`, recorded as an exception event too. */
  fail(message: string): void;
  /** Ends the span (`time`: performance.now() value; now when absent). Later calls do nothing. */
  end(time?: number): void;
  /** W3C traceparent naming this span as the parent. */
  traceparent(): string;
}

/** A sampled request's trace: its server span and the spans of what ran for it. */
export interface RequestTrace {
  /** The request's SERVER span. */
  readonly server: TraceSpan;
  /** The upstream attempt running now (its traceparent goes upstream), else null. */
  attempt: TraceSpan | null;
  /** A child span of the server span, starting now (or at `start`, a performance.now() value). */
  child(name: string, attributes?: Record<string, TraceValue>, start?: number): TraceSpan;
  /** An upstream attempt's CLIENT span (becomes `attempt`); retries count themselves. */
  startAttempt(upstream: string, endpoint: string, target: string): TraceSpan;
  /** Ends `span`, the attempt: `status` > 0 the upstream's answer, else `error` names the failure. */
  endAttempt(span: TraceSpan, status: number, error: string): void;
  /** A plugin callback ran from `start` to `end` (performance.now()); `failure` when it failed. */
  pluginCallback(plugin: string, phase: string, start: number, end: number, failure: Error | null): void;
  /** A plugin's proxy_log line: an event of its running callback's span. */
  pluginLog(plugin: string, level: string, message: string): void;
}
