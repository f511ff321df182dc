/**
 * OpenTelemetry traces through `@opentelemetry/api`: the sampling decision,
 * W3C `traceparent` parsing, and the {@link RequestTrace} of a sampled request
 * (src/core/trace.ts: its server span, middleware, plugin and upstream spans).
 *
 * Which exporter carries the spans:
 * - Deno's built-in OTLP exporter when `OTEL_DENO=true` and the config names
 *   no `endpoint`: it reads the standard `OTEL_*` variables at process start
 *   (endpoint, protocol, headers, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`).
 * - Otherwise Loom's own, the OpenTelemetry JS SDK (`@opentelemetry/sdk-trace`
 *   with the OTLP/HTTP exporter, loaded on first use): Deno's exporter is
 *   configured once per process from the environment, so it cannot take an
 *   endpoint, service name or batch delay from the config, nor change them on
 *   reload.
 *
 * Sampling is Loom's, before any span exists, parent-based: a client's
 * `traceparent` decides by its sampled flag, requests without one are traced
 * with probability `sample_rate`. A request not sampled gets no span at all
 * (its client's traceparent goes upstream unchanged), so a low rate costs
 * close to nothing; the config's rate is applied on reload, which Deno's
 * sampler (`OTEL_TRACES_SAMPLER`, read at start) could not do.
 *
 * @module
 */
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import type { RequestTrace, TraceSpan, TraceValue } from "../core/trace.ts";
import { otlpUrl, type TracingConfig } from "../config/observability.ts";
import { logger } from "./logger.ts";
import { VERSION } from "../version.ts";

/** Whether Deno's built-in OpenTelemetry is on (`OTEL_DENO=true`), checked once. */
export const DENO_OTEL: boolean = (() => {
  try {
    const v = Deno.env.get("OTEL_DENO");
    return v === "true" || v === "1";
  } catch {
    return false;
  }
})();

/** What a span times take: epoch milliseconds (fractions kept) from a performance.now() value. */
function epoch(t: number): number {
  return performance.timeOrigin + t;
}

/** A provider of Loom's own (the SDK), one per distinct exporter setting. */
interface OwnProvider {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

const own = new Map<string, OwnProvider | Promise<OwnProvider | null>>();

/** The key of the exporter `cfg` needs: "deno", or Loom's own exporter's settings. */
function exporterKey(cfg: TracingConfig): string {
  if (cfg.endpoint === undefined && DENO_OTEL) return "deno";
  return JSON.stringify([otlpUrl(cfg.endpoint, "traces"), cfg.service_name, cfg.batch_timeout]);
}

async function loadOwn(cfg: TracingConfig, key: string): Promise<OwnProvider | null> {
  try {
    const [sdk, otlp, res] = await Promise.all([
      import("@opentelemetry/sdk-trace"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
    ]);
    const url = otlpUrl(cfg.endpoint, "traces");
    const provider = new sdk.TracerProvider({
      resource: res.resourceFromAttributes({ "service.name": cfg.service_name, "service.version": VERSION }),
      spanProcessors: [
        new sdk.BatchSpanProcessor({
          exporter: new otlp.OTLPTraceExporter({ url }),
          scheduledDelayMillis: Math.max(1, cfg.batch_timeout),
        }),
      ],
    });
    const p: OwnProvider = {
      tracer: provider.getTracer("loom", VERSION),
      shutdown: () => provider.shutdown(),
    };
    own.set(key, p);
    logger.info("tracing: exporting spans", { endpoint: url, service: cfg.service_name });
    return p;
  } catch (e) {
    own.delete(key);
    logger.error("tracing: cannot start the OTLP exporter; requests are not traced", { error: String(e) });
    return null;
  }
}

/**
 * Makes the exporter `cfg` needs ready (Loom's own is imported on first use):
 * called before a snapshot with tracing is built, so its first requests are
 * traced. Exporters no current config uses are flushed and closed when
 * `retire` lists the configs in use.
 */
export async function prepareTracing(cfg: TracingConfig | undefined): Promise<void> {
  if (cfg === undefined || !cfg.enabled) return;
  const key = exporterKey(cfg);
  if (key === "deno") return;
  let p = own.get(key);
  if (p === undefined) own.set(key, p = loadOwn(cfg, key));
  await p;
}

/** Flushes and closes Loom's own exporters except the one `cfg` uses (after a reload; at shutdown none). */
export async function retireExporters(cfg: TracingConfig | undefined): Promise<void> {
  const keep = cfg !== undefined && cfg.enabled ? exporterKey(cfg) : "";
  const closing: Promise<void>[] = [];
  for (const [key, p] of own) {
    if (key === keep || p instanceof Promise) continue;
    own.delete(key);
    closing.push(p.shutdown().catch(() => {}));
  }
  await Promise.all(closing);
}

/** The tracer for `cfg`, or null while Loom's own exporter is still loading (it is started here). */
function tracerOf(cfg: TracingConfig, key: string): Tracer | null {
  if (key === "deno") return trace.getTracer("loom", VERSION);
  const p = own.get(key);
  if (p === undefined) {
    void prepareTracing(cfg);
    return null;
  }
  return p instanceof Promise ? null : p.tracer;
}

/** A parsed W3C traceparent (version 00 fields). */
export interface TraceParent {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^]*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** Parses a `traceparent` field (W3C Trace Context level 1); null when absent or invalid. */
export function parseTraceparent(v: string | undefined): TraceParent | null {
  if (v === undefined || v.length < 55) return null;
  const m = TRACEPARENT.exec(v.trim());
  if (m === null) return null;
  const [, version, traceId, spanId, flags, rest] = m;
  // Version ff is invalid; version 00 has nothing after the flags (later versions may).
  if (version === "ff" || (version === "00" && rest !== undefined)) return null;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** The `traceparent` naming `span` as the parent. */
function traceparentOf(span: Span): string {
  const sc = span.spanContext();
  return "00-" + sc.traceId + "-" + sc.spanId + ((sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? "-01" : "-00");
}

/** One span, as the layers see it. */
class OtelSpan implements TraceSpan {
  #ended = false;
  constructor(readonly span: Span) {}
  setAttribute(key: string, value: TraceValue): void {
    this.span.setAttribute(key, value);
  }
  event(name: string, attributes?: Record<string, TraceValue>, time?: number): void {
    this.span.addEvent(name, attributes, time === undefined ? undefined : epoch(time));
  }
  fail(message: string): void {
    this.span.setStatus({ code: SpanStatusCode.ERROR, message });
    this.span.addEvent("exception", { "exception.message": message });
  }
  end(time?: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.span.end(time === undefined ? undefined : epoch(time));
  }
  traceparent(): string {
    return traceparentOf(this.span);
  }
}

/** What {@link Tracing.begin} needs of a request. */
export interface RequestFacts {
  method: string;
  /** The path as routed (no query). */
  path: string;
  query: string;
  route: string;
  scheme: string;
  host: string;
  port: number;
  protocol: string;
  clientIp: string;
  userAgent: string | undefined;
  requestId: string;
  listener: string;
  /** performance.now() at arrival. */
  start: number;
}

/** "HTTP/1.1" → "1.1", "HTTP/2" → "2" (network.protocol.version). */
function protocolVersion(protocol: string): string {
  return protocol.startsWith("HTTP/") ? protocol.slice(5) : protocol;
}

/** A plugin's proxy_log line waiting for its callback's span. */
interface PendingLog {
  plugin: string;
  level: string;
  message: string;
  time: number;
}

/** The trace of one sampled request. */
export class OtelRequestTrace implements RequestTrace {
  readonly server: OtelSpan;
  attempt: OtelSpan | null = null;
  readonly #tracer: Tracer;
  readonly #parent: Context;
  readonly #method: string;
  #attempts = 0;
  #logs: PendingLog[] | null = null;

  constructor(tracer: Tracer, server: Span, method: string) {
    this.#tracer = tracer;
    this.server = new OtelSpan(server);
    this.#parent = trace.setSpan(ROOT_CONTEXT, server);
    this.#method = method;
  }

  child(name: string, attributes?: Record<string, TraceValue>, start?: number): TraceSpan {
    return new OtelSpan(this.#tracer.startSpan(
      name,
      { kind: SpanKind.INTERNAL, attributes, startTime: start === undefined ? undefined : epoch(start) },
      this.#parent,
    ));
  }

  startAttempt(upstream: string, endpoint: string, target: string): TraceSpan {
    const n = this.#attempts++;
    const colon = endpoint.lastIndexOf(":");
    const attributes: Record<string, TraceValue> = {
      "http.request.method": this.#method,
      "server.address": colon === -1 ? endpoint : endpoint.slice(0, colon).replace(/^\[|\]$/g, ""),
      "loom.upstream": upstream,
      "loom.upstream.endpoint": endpoint,
      "loom.upstream.target": target,
    };
    if (colon !== -1) attributes["server.port"] = Number(endpoint.slice(colon + 1));
    // Semantic conventions: the ordinal of a resent request (absent on the first).
    if (n > 0) attributes["http.request.resend_count"] = n;
    const span = new OtelSpan(this.#tracer.startSpan(
      "upstream " + upstream,
      { kind: SpanKind.CLIENT, attributes },
      this.#parent,
    ));
    this.attempt = span;
    return span;
  }

  endAttempt(span: TraceSpan, status: number, error: string): void {
    if (status > 0) span.setAttribute("http.response.status_code", status);
    if (error !== "") {
      span.setAttribute("error.type", error);
      span.fail(error);
    } else if (status >= 500) {
      span.setAttribute("error.type", String(status));
      span.fail("upstream answered " + status);
    }
    span.end();
    if (this.attempt === span) this.attempt = null;
  }

  pluginCallback(plugin: string, phase: string, start: number, end: number, failure: Error | null): void {
    const span = this.child("plugin " + plugin + " " + phase, {
      "loom.plugin": plugin,
      "loom.plugin.callback": phase,
    }, start);
    const logs = this.#logs;
    if (logs !== null) {
      // The lines this plugin logged during the callback (callbacks of a request never overlap).
      let kept = 0;
      for (const l of logs) {
        if (l.plugin === plugin && l.time <= end) {
          span.event("log", { "log.severity": l.level, "log.message": l.message }, l.time);
        } else logs[kept++] = l;
      }
      logs.length = kept;
    }
    if (failure !== null) span.fail(failure.message);
    span.end(end);
  }

  pluginLog(plugin: string, level: string, message: string): void {
    (this.#logs ??= []).push({ plugin, level, message, time: performance.now() });
  }

  /** Ends the server span with the response's facts. */
  finish(status: number, rejection: string, grpcStatus: string | undefined): void {
    const s = this.server;
    // Lines logged outside a timed callback (on_log, on_done): events of the request's span.
    for (const l of this.#logs ?? []) {
      s.event("log", { "loom.plugin": l.plugin, "log.severity": l.level, "log.message": l.message }, l.time);
    }
    if (status > 0) s.setAttribute("http.response.status_code", status);
    if (rejection !== "") s.setAttribute("loom.rejection", rejection);
    if (grpcStatus !== undefined) {
      const code = Number(grpcStatus);
      if (Number.isInteger(code)) s.setAttribute("rpc.grpc.status_code", code);
    }
    // Server spans fail on 5xx only (4xx are the client's); no status reached the client: failed too.
    if (status >= 500 || status === 0) s.fail(status === 0 ? "no response" : "status " + status);
    s.end();
  }
}

/** Tracing of one config snapshot: the sampling rule and the tracer. */
export class Tracing {
  readonly rate: number;
  readonly #cfg: TracingConfig;
  readonly #key: string;
  #tracer: Tracer | null;

  constructor(cfg: TracingConfig) {
    this.#cfg = cfg;
    this.rate = cfg.sample_rate;
    this.#key = exporterKey(cfg);
    this.#tracer = tracerOf(cfg, this.#key);
  }

  /**
   * The sampling decision for a request with `traceparent` (parent-based ratio):
   * the parent when valid, else null for "not sampled", or a root marker.
   */
  sample(traceparent: string | undefined): TraceParent | null | false {
    const parent = parseTraceparent(traceparent);
    if (parent !== null) return parent.sampled ? parent : false;
    const r = this.rate;
    return r >= 1 || (r > 0 && Math.random() < r) ? null : false;
  }

  /** Starts the trace of a request `sample` chose; null while the exporter is not ready. */
  begin(parent: TraceParent | null, f: RequestFacts): OtelRequestTrace | null {
    const tracer = this.#tracer ??= tracerOf(this.#cfg, this.#key);
    if (tracer === null) return null;
    const ctx = parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, {
      traceId: parent.traceId,
      spanId: parent.spanId,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    const attributes: Record<string, TraceValue> = {
      "http.request.method": f.method,
      "url.path": f.path,
      "url.scheme": f.scheme,
      "http.route": f.route,
      "server.address": f.host,
      "network.protocol.version": protocolVersion(f.protocol),
      "client.address": f.clientIp,
      "loom.request_id": f.requestId,
      "loom.listener": f.listener,
    };
    if (f.port > 0) attributes["server.port"] = f.port;
    if (f.query !== "") attributes["url.query"] = f.query;
    if (f.userAgent !== undefined) attributes["user_agent.original"] = f.userAgent;
    const span = tracer.startSpan(
      f.method + " " + f.route,
      { kind: SpanKind.SERVER, attributes, startTime: epoch(f.start) },
      ctx,
    );
    return new OtelRequestTrace(tracer, span, f.method);
  }
}
