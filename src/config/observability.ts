/**
 * The observability blocks of the config: top-level `tracing` (the Loom format's OpenTelemetry block),
 * `request_id`, the access log's `fields` and `sample`, OTLP metrics export and the admin dashboard.
 * Declared here, used by schema.ts (one field each) and the runtime.
 *
 * @module
 */
import { opt, t, type Type } from "./dsl.ts";

/** Top-level `tracing:` (OpenTelemetry spans, src/middleware/tracing/). */
export interface TracingConfig {
  /** On when the block is present. */
  enabled: boolean;
  /**
   * OTLP/HTTP collector: a URL (`http://collector:4318`, `/v1/traces` added when it has no path) or
   * `host:port`. Absent: Deno's built-in exporter when OTEL_DENO=true, else OTEL_EXPORTER_OTLP_ENDPOINT
   * or http://localhost:4318.
   */
  endpoint?: string;
  /** `service.name` of Loom's spans (Loom's own exporter; Deno's takes OTEL_SERVICE_NAME). Default "loom". */
  service_name: string;
  /** Fraction of requests without a sampled parent that are traced (parent-based). Default 1. */
  sample_rate: number;
  /** ms between exports of batched spans (Loom's own exporter). Default 5s. */
  batch_timeout: number;
}

/** Top-level `request_id:`. */
export interface RequestIdConfig {
  /** Return the request id on every response (Loom's own errors always carry X-Request-ID). */
  response_header: boolean;
  /** The response header's name. Default "x-request-id". */
  header: string;
}

/** Fields an access log line may have (`access_log.fields`), in the default line's order. */
export const ACCESS_LOG_FIELDS = [
  "time",
  "request_id",
  "route",
  "method",
  "path",
  "query",
  "status",
  "bytes_in",
  "bytes_out",
  "duration_ms",
  "upstream",
  "client_ip",
  "protocol",
  "user_agent",
  "grpc_status",
  "rejection",
  "host",
  "referer",
  "listener",
  "trace_id",
] as const;

/** One access log field name. */
export type AccessLogField = typeof ACCESS_LOG_FIELDS[number];

/** The fields of a line when `access_log.fields` is not given. */
export const DEFAULT_ACCESS_LOG_FIELDS: readonly AccessLogField[] = ACCESS_LOG_FIELDS.slice(0, 16);

/** `access_log.fields` and `access_log.sample` (schema fields, spread into the access_log object). */
export const accessLogFields = {
  fields: opt(
    t.list(t.enum(ACCESS_LOG_FIELDS), { minItems: 1 }),
    undefined,
    "The fields of each line, in this order (default: time through rejection). path is the path as " +
      "received without the query; query the raw query string.",
  ),
  sample: opt(
    t.number({ min: 0, max: 1 }),
    undefined,
    "Default 1. Fraction of successful (1xx-3xx) requests logged; 4xx, 5xx and failed requests are always logged.",
  ),
};

/** `tracing:` (Loom format; `enabled` defaults to on when the block is present). */
export const tracingType: Type = t.object({
  enabled: opt(t.bool(), true, "On when the block is present."),
  endpoint: opt(
    t.string({ check: endpointCheck }),
    undefined,
    'OTLP/HTTP collector, e.g. "http://otel-collector:4318" or "otel-collector:4318"; absent: Deno\'s ' +
      "exporter (OTEL_DENO=true) or OTEL_EXPORTER_OTLP_ENDPOINT.",
  ),
  service_name: opt(t.string(), "loom", "service.name of the spans."),
  sample_rate: opt(
    t.number({ min: 0, max: 1 }),
    1,
    "Fraction of requests traced when the client sent no sampled traceparent (parent-based sampling).",
  ),
  batch_timeout: opt(t.duration(), "5s", "Longest time a finished span waits to be exported."),
});

/** `request_id:`. */
export const requestIdType: Type = t.object({
  response_header: opt(t.bool(), false, "Return the request id on every response."),
  header: opt(
    t.string({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", patternMessage: "not a valid header field name" }),
    "x-request-id",
    "The response header carrying it.",
  ),
});

/** `metrics.opentelemetry:` (OTLP/HTTP JSON export of the merged metrics). */
export const otlpMetricsType: Type = t.object({
  enabled: opt(t.bool(), false),
  endpoint: opt(
    t.string({ check: (s) => s === "" ? undefined : endpointCheck(s) }),
    "",
    'OTLP/HTTP collector, e.g. "http://otel-collector:4318" ("": OTEL_EXPORTER_OTLP_ENDPOINT or ' +
      "http://localhost:4318); /v1/metrics is added when the URL has no path.",
  ),
  interval: opt(t.duration(), undefined, "Time between exports (default 15s)."),
});

/** `admin.dashboard:`. */
export const dashboardType: Type = t.object({
  enabled: opt(t.bool(), true, "Serve the live dashboard at /dashboard."),
  sample_interval: opt(
    t.duration(),
    "10s",
    "Time between the samples of the request, error and latency charts (90 samples are kept).",
  ),
});

/** The normalised `admin.dashboard` block. */
export interface DashboardConfig {
  enabled: boolean;
  /** ms. */
  sample_interval: number;
}

/** The normalised `metrics.opentelemetry` block. */
export interface OtlpMetricsConfig {
  enabled: boolean;
  endpoint: string;
  /** ms. Default 15s. */
  interval?: number;
}

function endpointCheck(s: string): string | undefined {
  if (
    /^https?:\/\/[^/\s]+(\/\S*)?$/.test(s) || /^[^/\s:]+:\d{1,5}$/.test(s) ||
    /^\[[0-9a-f:.]+\]:\d{1,5}$/i.test(s)
  ) {
    return undefined;
  }
  return `"${s}" is not an OTLP/HTTP endpoint; expected "http://host:4318" or "host:port"`;
}

/**
 * The OTLP/HTTP URL for `signal` ("traces", "metrics"): `endpoint` ("host:port" gets http://; a URL
 * without a path gets /v1/<signal>), else OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT (used as is),
 * OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/<signal>) or http://localhost:4318/v1/<signal>.
 */
export function otlpUrl(endpoint: string | undefined, signal: "traces" | "metrics"): string {
  if (endpoint !== undefined && endpoint !== "") {
    const url = /^https?:\/\//.test(endpoint) ? endpoint : "http://" + endpoint;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    return pathStart === -1 || url.slice(pathStart) === "/" ? url.replace(/\/$/, "") + "/v1/" + signal : url;
  }
  const env = (name: string) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined; // no --allow-env
    }
  };
  const specific = env(`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`);
  if (specific) return specific;
  const base = env("OTEL_EXPORTER_OTLP_ENDPOINT") || "http://localhost:4318";
  return base.replace(/\/$/, "") + "/v1/" + signal;
}
