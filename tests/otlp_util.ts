/**
 * A real OTLP/HTTP receiver on loopback for the tracing and metrics tests:
 * `POST /v1/traces` and `POST /v1/metrics` with JSON bodies
 * (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`, which Loom's own exporters always
 * send), flattened into spans and metric data points.
 */

/** An OTLP attribute value as JSON carries it. */
export type OtlpValue = {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
};

/** One received span. */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: OtlpValue }[];
  events?: { name: string; timeUnixNano: string; attributes?: { key: string; value: OtlpValue }[] }[];
  status?: { code?: number; message?: string };
  /** service.name of its resource. */
  service: string;
}

/** One received metric (name, and its data points as sent). */
export interface OtlpMetric {
  name: string;
  data: Record<string, unknown>;
}

/** The plain value of an OTLP attribute value. */
export function valueOf(v: OtlpValue | undefined): string | number | boolean | undefined {
  if (v === undefined) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue;
}

/** A span's attribute by key. */
export function attr(s: { attributes?: { key: string; value: OtlpValue }[] }, key: string) {
  return valueOf(s.attributes?.find((a) => a.key === key)?.value);
}

/** A running receiver. */
export interface OtlpReceiver {
  readonly port: number;
  /** http://127.0.0.1:port */
  readonly url: string;
  readonly spans: OtlpSpan[];
  readonly metrics: OtlpMetric[];
  /** Paths of every request, in order. */
  readonly paths: string[];
  close(): Promise<void>;
}

/** Starts a receiver on a free loopback port. */
export function startOtlpReceiver(): OtlpReceiver {
  const spans: OtlpSpan[] = [];
  const metrics: OtlpMetric[] = [];
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    paths.push(path);
    let body: Record<string, unknown[]> = {};
    try {
      body = await req.json();
    } catch {
      return new Response("expected JSON", { status: 400 });
    }
    if (path === "/v1/traces") {
      for (const rs of (body.resourceSpans ?? []) as Record<string, unknown>[]) {
        const resource = rs.resource as { attributes?: { key: string; value: OtlpValue }[] } | undefined;
        const service = String(attr(resource ?? {}, "service.name") ?? "");
        for (const ss of (rs.scopeSpans ?? []) as { spans?: OtlpSpan[] }[]) {
          for (const s of ss.spans ?? []) spans.push({ ...s, service });
        }
      }
    } else if (path === "/v1/metrics") {
      for (const rm of (body.resourceMetrics ?? []) as Record<string, unknown>[]) {
        for (const sm of (rm.scopeMetrics ?? []) as { metrics?: Record<string, unknown>[] }[]) {
          for (const m of sm.metrics ?? []) metrics.push({ name: String(m.name), data: m });
        }
      }
    }
    return Response.json({});
  });
  const port = server.addr.port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    spans,
    metrics,
    paths,
    close: () => server.shutdown(),
  };
}
