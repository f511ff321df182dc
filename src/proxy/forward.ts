/**
 * Forwarding: picks an endpoint, takes a pooled connection, runs the exchange
 * and turns failures into gateway answers (502 refused/reset, 503 no endpoint,
 * 504 timeout). A kept-alive connection the upstream closed meanwhile is
 * retried once on a fresh connection, for idempotent requests only.
 *
 * Upstreams with a bulkhead, circuit breakers, outlier detection or retries
 * take the resilient loop of resilient.ts (shared with HTTP/2), with this
 * file's HTTP/1.1 attempt; the others the plain path, which pays one boolean
 * test for the existence of the other.
 */
import type { RequestContext } from "../core/context.ts";
import { bytesBody } from "../core/body.ts";
import { ConnectError } from "../upstream/pool.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { RetryPolicy } from "../upstream/retry.ts";
import type { Upstream } from "../upstream/upstream.ts";
import type { CidrSet } from "../net/cidr.ts";
import { http1UpstreamHead, upstreamAuthority } from "./header_policy.ts";
import { respondError } from "../core/respond.ts";
import { exchange, UpstreamFailure } from "./exchange.ts";
import {
  type AttemptProtocol,
  type BodyReplay,
  CLIENT,
  CONNECT_REFUSED,
  CONNECT_TIMEOUT,
  DISCARDED,
  forwardResilient,
  IDEMPOTENT,
  PROTOCOL,
  RESET,
  respondFailure,
  TIMEOUT,
} from "./resilient.ts";

/** Per-route forwarding options, compiled from config once. */
export interface ForwardOptions {
  /** Keep the client's Host (true) or send the endpoint address. */
  preserveHost: boolean;
  hostRewrite: string | undefined;
  connectTimeout: number;
  perTryTimeout: number;
  totalTimeout: number;
  /** The upstream has resilience state: take the resilient path. */
  resilient?: boolean;
  /** The route's retry policy, or null. */
  retry?: RetryPolicy | null;
  /** Clients whose X-Forwarded-For and Forwarded are appended to (top-level `trusted_proxies`); null: none. */
  trustedProxies?: CidrSet | null;
}

/** Upstream-side metrics the proxy reports. */
export interface ProxyObserver {
  upstream(upstream: string, endpoint: string, status: number, seconds: number): void;
  upstreamError(upstream: string, endpoint: string, type: string): void;
  /** A retry was sent (`reason`: connect, reset, timeout or the status). */
  retry?(upstream: string, reason: string): void;
  /** A circuit breaker changed state (0 closed, 1 open, 2 half-open). */
  circuitState?(upstream: string, endpoint: string, state: number): void;
}

/**
 * Forwards `ctx` to `up`, sending `target` (path + query) upstream.
 * Always finishes the response (or aborts the client stream) before resolving.
 */
export function forward(
  ctx: RequestContext,
  up: Upstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  if (opt.resilient === true) return forwardResilient(ctx, up, target, opt, obs, HTTP1, opt.totalTimeout);
  const ep = up.select(ctx);
  if (ep === null) return respondError(ctx, 503, "no healthy upstream endpoint");
  ctx.upstreamAddr = ep.address;
  // One attempt that answers its own failure: no extra async layer on the hottest path.
  const now = Date.now();
  const done: Promise<unknown> = attempt(
    ctx,
    up,
    ep,
    target,
    opt,
    opt.perTryTimeout,
    now + opt.totalTimeout,
    null,
    obs,
    null,
    true,
    now,
  );
  return done as Promise<void>;
}

/**
 * The HTTP/1.1 request head for `ep`: the header policy's head (Host per the
 * route's options), the route's upstream_request hooks, then the text.
 */
function requestHeadFor(
  ctx: RequestContext,
  ep: Endpoint,
  secure: boolean,
  target: string,
  opt: ForwardOptions,
): string {
  const authority = upstreamAuthority(ctx, opt, ep.hostname, ep.port, secure);
  return http1UpstreamHead(ctx, target, authority, opt.trustedProxies ?? null);
}

/** The HTTP/1.1 side of the resilient loop: pooled-connection attempts, bodies buffered for replay. */
const HTTP1: AttemptProtocol = {
  attempt,
  keep: async (ctx, policy, methodOk) => {
    // Only a body a retry may resend is buffered (it then goes upstream with a Content-Length).
    if (!methodOk) return null;
    const kept = await keepBody(ctx, policy.maxBody);
    if (kept === null) return null;
    ctx.body = bytesBody(kept);
    return { replayable: () => true, rewind: (c) => c.body = bytesBody(kept) };
  },
  fail: respondFailure,
};

/**
 * One attempt on `ep`: the status, or a failure outcome of resilient.ts. A
 * kept-alive connection the upstream closed meanwhile is retried once on a
 * fresh one when that is safe (idempotent, no body). With `answer` (the plain
 * path) a failure is answered here and the request's end time recorded;
 * `at` is its Date.now() when it just read it (one clock read less), else 0.
 */
async function attempt(
  ctx: RequestContext,
  up: Upstream,
  ep: Endpoint,
  target: string,
  opt: ForwardOptions,
  perTry: number,
  totalDeadline: number,
  discard: ReadonlySet<number> | null,
  obs: ProxyObserver | null,
  _replay: BodyReplay | null,
  answer = false,
  at = 0,
): Promise<number> {
  const body = ctx.body;
  const pool = up.pool(ep);
  // Traced requests: the attempt's span, opened before the head so upstream_request hooks see it.
  const span = ctx.trace === null ? null : ctx.trace.startAttempt(up.name, ep.address, target);
  let failure = "";
  const head = requestHeadFor(ctx, ep, pool.tls !== null, target, opt);
  const t0 = performance.now();
  ep.begin();
  let status = 0;
  let outcome: number;
  try {
    for (let stale = 0;; stale++) {
      failure = "";
      let now = stale === 0 && at !== 0 ? at : Date.now();
      let pc = stale === 0 ? pool.takeIdle(now) : null;
      if (pc === null) {
        try {
          pc = await pool.openNew(Math.min(opt.connectTimeout, Math.max(1, totalDeadline - now)));
          now = Date.now();
        } catch (e) {
          const kind = e instanceof ConnectError ? e.kind : "refused";
          obs?.upstreamError(up.name, ep.address, "connect_" + kind);
          failure = "connect_" + kind;
          outcome = kind === "timeout" ? CONNECT_TIMEOUT : CONNECT_REFUSED;
          break;
        }
      }
      try {
        return status = await exchange(ctx, pc, head, perTry, totalDeadline, discard, now);
      } catch (e) {
        if (!(e instanceof UpstreamFailure)) throw e;
        if (
          e.retryableStale && pc.reused && stale === 0 && body.length === 0 && IDEMPOTENT.has(ctx.method) &&
          !ctx.aborted
        ) continue;
        if (e.kind !== "status") failure = ctx.aborted ? "client_aborted" : e.kind;
        if (e.kind === "client" || ctx.aborted) {
          if (e.status > 0 && !ctx.res.headSent && !ctx.aborted) {
            await respondError(ctx, e.status, e.message, [["connection", "close"]]);
          } else ctx.res.abort();
          return CLIENT;
        }
        if (e.kind === "status") {
          status = e.status;
          return DISCARDED - e.status;
        }
        obs?.upstreamError(up.name, ep.address, e.kind);
        // Failures count in the upstream's status and duration metrics as the answer they become.
        status = e.kind === "timeout" ? 504 : 502;
        if (e.kind === "protocol") ctx.upstreamError = e.message;
        outcome = e.kind === "timeout" ? TIMEOUT : e.kind === "reset" ? RESET : PROTOCOL;
        break;
      }
    }
    if (answer) await respondFailure(ctx, outcome);
    return outcome;
  } finally {
    ep.end();
    const end = performance.now();
    if (answer) ctx.endTime = end;
    if (status > 0) obs?.upstream(up.name, ep.address, status, (end - t0) / 1000);
    if (span !== null) ctx.trace!.endAttempt(span, status, failure);
  }
}

/**
 * Reads the request body into memory for replay when it fits `max` bytes.
 * Chunks are copied: the reader's views are only valid until its next read.
 * A bigger body is not kept: `ctx.body` becomes the part read so far followed
 * by the rest, and null is returned.
 */
async function keepBody(ctx: RequestContext, max: number): Promise<Uint8Array | null> {
  const body = ctx.body;
  if (body.length > max) return null;
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const chunk = await body.read();
    if (chunk === null) break;
    parts.push(chunk.slice());
    size += chunk.length;
    if (size > max) {
      let i = 0;
      ctx.body = {
        length: body.length,
        get trailers() {
          return body.trailers;
        },
        read: () => i < parts.length ? Promise.resolve(parts[i++]) : body.read(),
      };
      return null;
    }
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
