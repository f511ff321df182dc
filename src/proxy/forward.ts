/**
 * Forwarding: picks an endpoint, takes a pooled connection, runs the exchange
 * and turns failures into gateway answers (502 refused/reset, 503 no endpoint,
 * 504 timeout). A kept-alive connection the upstream closed meanwhile is
 * retried once on a fresh connection, for idempotent requests only.
 */
import type { RequestContext } from "../gateway/context.ts";
import { ConnectError, type ConnectionPool } from "../upstream/pool.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { upstreamRequestHead } from "./headers.ts";
import { respondError } from "./errors.ts";
import { exchange, UpstreamFailure } from "./exchange.ts";

/** What the proxy needs of an upstream: selection and a pool per endpoint. */
export interface ProxyUpstream {
  readonly name: string;
  select(
    input: { header(name: string): string | undefined; clientIp: string },
    exclude?: Endpoint,
  ): Endpoint | null;
  pool(endpoint: Endpoint): ConnectionPool;
}

/** Per-route forwarding options, compiled from config once. */
export interface ForwardOptions {
  /** Keep the client's Host (true) or send the endpoint address. */
  preserveHost: boolean;
  hostRewrite: string | undefined;
  connectTimeout: number;
  perTryTimeout: number;
  totalTimeout: number;
}

/** Upstream-side metrics the proxy reports. */
export interface ProxyObserver {
  upstream(upstream: string, endpoint: string, status: number, seconds: number): void;
  upstreamError(upstream: string, endpoint: string, type: string): void;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Forwards `ctx` to `up`, sending `target` (path + query) upstream.
 * Always finishes the response (or aborts the client stream) before resolving.
 */
export async function forward(
  ctx: RequestContext,
  up: ProxyUpstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  const ep = up.select(ctx);
  if (ep === null) return respondError(ctx, 503, "no healthy upstream endpoint");
  ctx.upstreamAddr = ep.address;
  const host = opt.hostRewrite ?? (opt.preserveHost && ctx.authority !== "" ? ctx.authority : hostOf(ep));
  const body = ctx.body;
  const framing = body.length === 0
    ? (ctx.method === "POST" || ctx.method === "PUT" || ctx.method === "PATCH" ? "content-length: 0\r\n" : "")
    : body.length > 0
    ? "content-length: " + body.length + "\r\n"
    : "transfer-encoding: chunked\r\n";
  const head = upstreamRequestHead(ctx, {
    method: ctx.method,
    target,
    host,
    framing,
    upgrade: ctx.upgrade,
    requestId: ctx.id,
  });
  const pool = up.pool(ep);
  const now = Date.now();
  const totalDeadline = now + opt.totalTimeout;
  ep.begin();
  const t0 = ctx.start;
  let status = 0;
  try {
    for (let attempt = 0;; attempt++) {
      // Synchronous idle take first: no promise on the common path.
      let pc = attempt === 0 ? pool.takeIdle(now) : null;
      if (pc === null) {
        try {
          pc = await pool.openNew(Math.min(opt.connectTimeout, Math.max(1, totalDeadline - Date.now())));
        } catch (e) {
          const kind = e instanceof ConnectError ? e.kind : "refused";
          obs?.upstreamError(up.name, ep.address, "connect_" + kind);
          return await respondError(
            ctx,
            kind === "timeout" ? 504 : 502,
            kind === "timeout" ? "upstream connect timeout" : "upstream connection refused",
          );
        }
      }
      try {
        status = await exchange(ctx, pc, head, opt.perTryTimeout, totalDeadline);
        return;
      } catch (e) {
        if (!(e instanceof UpstreamFailure)) throw e;
        // A kept-alive connection the upstream closed meanwhile: retry once, fresh, if safe.
        if (
          e.retryableStale && pc.reused && attempt === 0 && body.length === 0 && IDEMPOTENT.has(ctx.method) &&
          !ctx.aborted
        ) continue;
        if (e.kind === "client" || ctx.aborted) {
          if (e.status > 0 && !ctx.res.headSent && !ctx.aborted) {
            return await respondError(ctx, e.status, e.message, [["connection", "close"]]);
          }
          ctx.res.abort();
          return;
        }
        obs?.upstreamError(up.name, ep.address, e.kind);
        status = e.kind === "timeout" ? 504 : 502;
        return await respondError(
          ctx,
          status,
          e.kind === "timeout"
            ? "upstream timeout"
            : e.kind === "reset"
            ? "upstream connection reset"
            : e.message,
        );
      }
    }
  } finally {
    ep.end();
    const end = ctx.endTime = performance.now();
    if (status > 0) obs?.upstream(up.name, ep.address, status, (end - t0) / 1000);
  }
}

function hostOf(ep: Endpoint): string {
  return ep.port === 80
    ? ep.hostname
    : (ep.hostname.includes(":") ? "[" + ep.hostname + "]" : ep.hostname) + ":" +
      ep.port;
}
