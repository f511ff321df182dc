/**
 * `tracing`: the top-level `tracing:` block (Loom format) as the first
 * middleware of every route. For a request the sampling rule picks
 * (parent-based ratio, src/observability/tracing.ts) it opens the SERVER
 * span (HTTP semantic conventions: `http.request.method`, `url.path`,
 * `http.route` = the route id, `http.response.status_code`,
 * `server.address`, `network.protocol.version`), puts the request's trace on
 * `ctx.trace` for the other instrumentation points (compose.ts: a span per
 * middleware; the proxy: a CLIENT span per upstream attempt, retries
 * counted; the Proxy-Wasm host: a span per plugin callback with its
 * `proxy_log` lines as events), and, through an `upstream_request` hook it
 * adds to that request's hooks only, sends `traceparent` upstream with the running attempt's span as the parent (the
 * client's `tracestate` goes on unchanged). Every upstream protocol runs
 * that phase: HTTP/1.1, HTTP/2 and gRPC, and the WebSocket upgrade (whose
 * span lasts as long as the tunnel).
 *
 * A request that is not sampled gets no span and no `ctx.trace`: its
 * client's `traceparent` passes upstream untouched.
 *
 * ```yaml
 * tracing:
 *   enabled: true
 *   endpoint: "http://otel-collector:4318" # absent: Deno's exporter (OTEL_DENO=true) or OTEL_* variables
 *   service_name: loom
 *   sample_rate: 0.1
 *   batch_timeout: 5s
 * ```
 *
 * @module
 */
import type { Middleware, PhaseHooks, UpstreamRequestHead } from "../../core/middleware.ts";
import type { RequestContext } from "../../core/context.ts";
import { type OtelRequestTrace, Tracing } from "../../observability/tracing.ts";
import type { TracingConfig } from "../../config/observability.ts";
import { grpcStatusLabel } from "../../grpc/status.ts";

/** The middleware's name; compose.ts times every other middleware when a chain has it. */
export const TRACING_MIDDLEWARE = "tracing";

function finish(ctx: RequestContext, tr: OtelRequestTrace): void {
  tr.finish(ctx.status, ctx.rejection, ctx.grpc !== 0 ? grpcStatusLabel(ctx) : undefined);
}

/** The middleware for a `tracing` block (built once per snapshot). */
export function tracing(cfg: TracingConfig): Middleware {
  const t = new Tracing(cfg);
  return {
    name: TRACING_MIDDLEWARE,
    request: (ctx, next) => {
      const parent = t.sample(ctx.headers.get("traceparent"));
      if (parent === false) return next();
      const tr = t.begin(parent, {
        method: ctx.method,
        path: ctx.path,
        query: ctx.query,
        route: ctx.route?.id ?? "",
        scheme: ctx.scheme,
        host: ctx.host,
        port: ctx.localPort,
        protocol: ctx.protocol,
        clientIp: ctx.clientIp,
        userAgent: ctx.headers.get("user-agent"),
        requestId: ctx.id,
        listener: ctx.listener,
        start: ctx.start,
      });
      if (tr === null) return next();
      ctx.trace = tr;
      // Only traced requests run the traceparent hook: the others keep the route's hooks (and their
      // faster upstream head when it has none).
      ctx.hooks = withTraceparent(ctx.hooks);
      return next().then(() => finish(ctx, tr), (e) => {
        if (ctx.status === 0) ctx.status = 500;
        finish(ctx, tr);
        throw e;
      });
    },
  };
}

/** The upstream_request hook of traced requests: the running attempt's span is the upstream's parent. */
function sendTraceparent(ctx: RequestContext, head: UpstreamRequestHead): void {
  const tr = ctx.trace;
  if (tr !== null) head.headers.set("traceparent", (tr.attempt ?? tr.server).traceparent());
}

const ONLY_TRACEPARENT: PhaseHooks = {
  upstreamRequest: [sendTraceparent],
  response: null,
  responseBody: null,
  log: null,
};
const traced = new WeakMap<PhaseHooks, PhaseHooks>();

/** `hooks` with {@link sendTraceparent} first among the upstream_request hooks (one object per route). */
function withTraceparent(hooks: PhaseHooks | null): PhaseHooks {
  if (hooks === null) return ONLY_TRACEPARENT;
  let h = traced.get(hooks);
  if (h === undefined) {
    h = { ...hooks, upstreamRequest: [sendTraceparent, ...hooks.upstreamRequest ?? []] };
    traced.set(hooks, h);
  }
  return h;
}
