/**
 * The life of a request, in named phases (after Pingora):
 *
 *   request id → normalise target → route (snapshot) → TRACE / Max-Forwards
 *   rules (intermediary.ts) → the route's compiled chain: middleware `request`
 *   phase → plugins → proxy (`upstream_request`, `response`, `response_body`
 *   hooks run inside) → `log`
 *
 * Engines call `handle(ctx)`; the snapshot is read once per request, so a
 * reload never changes the routes under a request in flight.
 */
import type { RequestContext } from "../core/context.ts";
import type { Snapshot } from "./snapshot.ts";
import { encodePath, normalizePath, splitTarget, stripPrefix } from "../router/mod.ts";
import { grpcKindOf } from "../core/grpc_reply.ts";
import { grpcStatusLabel, watchGrpcStatus } from "../grpc/status.ts";
import { TUNNEL_OBSERVER, TUNNEL_SPLICER, type TunnelSplicer } from "../proxy/tunnel.ts";
import { respondError } from "../core/respond.ts";
import type { GatewayMetrics } from "../observability/gateway_metrics.ts";
import type { AccessLog, AccessLogEntry } from "../observability/access_log.ts";
import type { RecentErrors } from "../observability/recent_errors.ts";
import { requestIdFrom } from "../observability/request_id.ts";
import { resolveClientIp } from "../net/client_ip.ts";
import { logger } from "../observability/logger.ts";
import type { RouteRuntime } from "./snapshot.ts";
import { serverOptions, traceOrOptions } from "./intermediary.ts";

/** Strips the port and lower-cases a Host / :authority value. */
export function hostForRouting(authority: string): string {
  let h = authority;
  if (h.charCodeAt(0) === 91 /* [ */) {
    const end = h.indexOf("]");
    h = end === -1 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(":");
    if (colon !== -1) h = h.slice(0, colon);
  }
  // Fast path: most hosts are already lower-case.
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 65 && c <= 90) return h.toLowerCase();
  }
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

/** The protocol-agnostic gateway core. */
export class Gateway {
  /** The current snapshot; replaced whole on reload. */
  snapshot: Snapshot;
  /** Hands upgraded tunnels to the kernel (eBPF splice_tunnels); set by the instance. */
  splicer: TunnelSplicer | null = null;

  constructor(
    snapshot: Snapshot,
    readonly metrics: GatewayMetrics | null,
    readonly accessLog: AccessLog | null,
    /** The last failed requests, for the admin dashboard (null: not kept). */
    readonly recentErrors: RecentErrors | null = null,
  ) {
    this.snapshot = snapshot;
    // Plugin-defined metrics and loom_plugin_* go to this gateway's registry.
    snapshot.plugins.attachMetrics(metrics?.registry ?? null);
  }

  async handle(ctx: RequestContext): Promise<void> {
    const snap = this.snapshot;
    try {
      await this.route(ctx, snap);
    } catch (e) {
      logger.error("request failed", { error: String(e), request_id: ctx.id });
      if (!ctx.res.headSent && !ctx.aborted) await respondError(ctx, 500, "internal error");
      else ctx.res.abort();
    } finally {
      this.record(ctx);
    }
  }

  /** Not async: returns the phase's promise directly (one promise less per request). */
  private route(ctx: RequestContext, snap: Snapshot): Promise<void> {
    ctx.id = requestIdFrom(ctx.headers.get("x-request-id"));
    // One client-IP rule for logs, filters and limits: through configured trusted proxies only.
    const trusted = snap.trustedProxies;
    if (trusted !== null && trusted.has(ctx.peerIp)) {
      ctx.clientIp = resolveClientIp(
        ctx.peerIp,
        trusted,
        ctx.headers.getJoined("x-forwarded-for"),
        ctx.headers.getJoined("forwarded"),
      );
    }
    // gRPC is always POST: other methods skip the content-type lookup.
    if (ctx.method === "POST") ctx.grpc = grpcKindOf(ctx.headers.get("content-type"));
    // gRPC outcomes are grpc-status values, not HTTP statuses: record the one sent.
    if (ctx.grpc !== 0) watchGrpcStatus(ctx);
    const { path: rawPath, query } = splitTarget(ctx.target);
    const path = normalizePath(rawPath);
    if (path === null) {
      return serverOptions(ctx) ?? respondError(ctx, 400, "invalid request path", idHeader(snap, ctx));
    }
    ctx.path = path;
    ctx.query = query;
    ctx.host = hostForRouting(ctx.authority);
    const m = snap.router.match(ctx);
    if (m === null) return respondError(ctx, 404, "no route matched", idHeader(snap, ctx));
    const rt: RouteRuntime = m.route.data;
    ctx.route = rt;
    ctx.params = m.params as Record<string, string>;
    ctx.pathRest = m.rest;
    // Upgrades are rare: only they pay for the vars map that lets the tunnel count itself.
    if (ctx.upgrade !== undefined) {
      if (this.metrics !== null) ctx.vars.set(TUNNEL_OBSERVER, this.metrics);
      if (this.splicer !== null) ctx.vars.set(TUNNEL_SPLICER, this.splicer);
    }
    const upPath = rt.rewrite !== null
      ? rt.rewrite(m.params, m.rest)
      : rt.stripPrefix
      ? encodePath(stripPrefix(path, m.prefix))
      : encodePath(path);
    ctx.upstreamTarget = query === "" ? upPath : upPath + "?" + query;
    const method = ctx.method;
    if (method === "OPTIONS" || method === "TRACE") {
      // RFC 9110 rules of Loom's own, before any middleware: TRACE refused, Max-Forwards.
      const answer = traceOrOptions(ctx, rt.config);
      if (answer !== null) return answer;
      return method === "OPTIONS" ? rt.optionsHandler(ctx) : rt.handler(ctx);
    }
    return rt.handler(ctx);
  }

  private record(ctx: RequestContext): void {
    const routeId = ctx.route?.id ?? "";
    const seconds = ((ctx.endTime > 0 ? ctx.endTime : performance.now()) - ctx.start) / 1000;
    this.metrics?.request(routeId, ctx.method, ctx.status, seconds);
    const grpcStatus = ctx.grpc !== 0 ? grpcStatusLabel(ctx) : undefined;
    if (grpcStatus !== undefined) this.metrics?.grpcResponse(routeId, grpcStatus);
    if (ctx.rejection !== "") this.metrics?.rejection(routeId, ctx.rejection);
    const log = ctx.hooks?.log;
    if (log != null) runLogHooks(ctx, log);
    const failed = ctx.status >= 500 || ctx.status === 0;
    const access = this.accessLog;
    if (access === null && !(failed && this.recentErrors !== null)) return;
    const target = ctx.target;
    const q = target.indexOf("?");
    const path = q === -1 ? target : target.slice(0, q);
    if (failed) {
      this.recentErrors?.add({
        time: Date.now(),
        request_id: ctx.id,
        route: routeId,
        method: ctx.method,
        path,
        status: ctx.status,
        duration_ms: seconds * 1000,
        upstream: ctx.upstreamAddr,
        error: ctx.upstreamError || ctx.rejection,
      });
    }
    if (access === null) return;
    const entry: AccessLogEntry = {
      request_id: ctx.id,
      route: routeId,
      method: ctx.method,
      path,
      query: q === -1 ? "" : target.slice(q + 1),
      status: ctx.status,
      bytes_in: ctx.bytesIn,
      bytes_out: ctx.bytesOut,
      duration_ms: seconds * 1000,
      upstream: ctx.upstreamAddr,
      client_ip: ctx.clientIp,
      protocol: ctx.protocol,
      user_agent: ctx.headers.get("user-agent") ?? "",
      grpc_status: grpcStatus,
      rejection: ctx.rejection === "" ? undefined : ctx.rejection,
    };
    if (access.extras) {
      // Configured fields beyond the default line: looked up only then.
      entry.host = ctx.authority;
      entry.referer = ctx.headers.get("referer") ?? "";
      entry.listener = ctx.listener;
      entry.trace_id = ctx.trace === null ? "" : ctx.trace.server.traceparent().slice(3, 35);
    }
    access.log(entry);
  }
}

/**
 * Answers without a route carry the request id in the `request_id` block's
 * header too (routed ones get it from its middleware; X-Request-ID is always there).
 */
function idHeader(snap: Snapshot, ctx: RequestContext): [string, string][] | undefined {
  const r = snap.config.request_id;
  if (r === undefined || !r.response_header || r.header.toLowerCase() === "x-request-id") return undefined;
  return [[r.header.toLowerCase(), ctx.id]];
}

/** The `log` phase: after the response, and a failing hook never affects the others. */
function runLogHooks(ctx: RequestContext, hooks: readonly ((ctx: RequestContext) => void)[]): void {
  for (const h of hooks) {
    try {
      h(ctx);
    } catch (e) {
      logger.warn("log-phase middleware failed", { error: String(e), request_id: ctx.id });
    }
  }
}
