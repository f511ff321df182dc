/**
 * Forwarding: picks an endpoint, takes a pooled connection, runs the exchange
 * and turns failures into gateway answers (502 refused/reset, 503 no endpoint,
 * 504 timeout). A kept-alive connection the upstream closed meanwhile is
 * retried once on a fresh connection, for idempotent requests only.
 *
 * Upstreams with a bulkhead, circuit breakers, outlier detection or retries
 * take {@linkcode forwardResilient}; the others the plain path, which pays
 * one boolean test for the existence of the other.
 */
import type { RequestContext } from "../gateway/context.ts";
import { bytesBody } from "../gateway/body.ts";
import { ConnectError, type ConnectionPool } from "../upstream/pool.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { ADMITTED, DENIED } from "../upstream/circuit_breaker.ts";
import { outlierFailure, outlierSuccess } from "../upstream/outlier.ts";
import type { Resilience } from "../upstream/resilience.ts";
import { backoff, type RetryPolicy } from "../upstream/retry.ts";
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
  /** Resilience state; null (or absent) for the plain path. */
  readonly resilience?: Resilience | null;
}

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
  if (opt.resilient === true) return forwardResilient(ctx, up, target, opt, obs);
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

// Outcomes of one attempt of the resilient path: a relayed status (> 0), or one
// of these; a status the retry policy discarded is DISCARDED - status.
const CONNECT_REFUSED = -1;
const CONNECT_TIMEOUT = -2;
const RESET = -3;
const TIMEOUT = -4;
const PROTOCOL = -5;
/** The client went away or sent a bad body; its response is already dealt with. */
const CLIENT = -6;
const DISCARDED = -1000;

/**
 * Forwarding with bulkhead, circuit breakers, outlier detection and retries.
 * Retries go to another endpoint when one is available, only while nothing
 * of the response reached the client.
 */
async function forwardResilient(
  ctx: RequestContext,
  up: ProxyUpstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  const rs = up.resilience!;
  const bh = rs.bulkhead;
  if (bh !== null && !bh.tryEnter() && !(await bh.wait())) {
    ctx.endTime = performance.now();
    return respondError(ctx, 503, "upstream at capacity", RETRY_AFTER_1);
  }
  const budget = rs.budget;
  budget.active++;
  let retrying = false;
  try {
    retrying = await attempts(ctx, up, rs, target, opt, obs);
  } finally {
    budget.active--;
    if (retrying) budget.retrying--;
    bh?.leave();
    ctx.endTime = performance.now();
  }
}

const RETRY_AFTER_1: [string, string][] = [["retry-after", "1"]];

/** The attempt loop; returns whether it counted itself in the retry budget. */
async function attempts(
  ctx: RequestContext,
  up: ProxyUpstream,
  rs: Resilience,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<boolean> {
  const policy = opt.retry ?? null;
  const totalDeadline = Date.now() + opt.totalTimeout;
  const methodOk = policy !== null && (policy.nonIdempotent || IDEMPOTENT.has(ctx.method));
  let replayable = ctx.body.length === 0;
  let kept: Uint8Array | null = null;
  if (policy !== null && methodOk && !replayable) {
    try {
      kept = await keepBody(ctx, policy.maxBody);
    } catch (e) {
      const status = (e as { status?: number }).status ?? 400;
      if (!ctx.aborted) await respondError(ctx, status, "invalid request body", [["connection", "close"]]);
      return false;
    }
    replayable = kept !== null;
  }
  const perTry = policy?.perTryTimeout ?? opt.perTryTimeout;
  let exclude: Endpoint | undefined = undefined;
  let retries = 0;
  for (;;) {
    const now = Date.now();
    let ep = up.select(ctx, exclude);
    let token = ADMITTED;
    if (rs.breakers) {
      // An open circuit sends the request to another endpoint, if any admits it.
      let denied: Endpoint | null = null;
      for (let k = 0; ep !== null; k++) {
        const b = ep.breaker!;
        const before = b.state;
        token = b.admit(now);
        if (b.state !== before) obs?.circuitState?.(up.name, ep.address, b.state);
        if (token !== DENIED) break;
        denied ??= ep;
        ep = k + 1 < rs.endpoints.length ? up.select(ctx, ep) : null;
      }
      if (ep === null && denied !== null) {
        return failFast(ctx, denied, now, retries > 0);
      }
    }
    if (ep === null) {
      await respondError(ctx, 503, "no healthy upstream endpoint");
      return retries > 0;
    }
    ctx.upstreamAddr = ep.address;
    const budgetOk = policy !== null && retries < policy.maxRetries &&
      (retries > 0 || rs.budget.allows(policy.budget));
    const discard = budgetOk && methodOk && replayable ? policy!.codes : null;
    if (kept !== null) ctx.body = bytesBody(kept);
    const outcome = await attempt(ctx, up, ep, target, opt, perTry, totalDeadline, discard, obs);
    const end = Date.now();
    if (outcome === CLIENT) {
      ep.breaker?.cancel(token);
      return retries > 0;
    }
    const ok = outcome > 0 ? outcome < 500 : outcome <= DISCARDED ? DISCARDED - outcome < 500 : false;
    const b = ep.breaker;
    if (b !== null) {
      const before = b.state;
      b.record(token, ok, end);
      if (b.state !== before) obs?.circuitState?.(up.name, ep.address, b.state);
    }
    if (rs.outlier !== null) {
      if (ok) outlierSuccess(ep, rs.outlier, end);
      else outlierFailure(ep, rs.outlier, rs.endpoints, end);
    }
    if (outcome > 0) return retries > 0;
    const connectFailed = outcome === CONNECT_REFUSED || outcome === CONNECT_TIMEOUT;
    const retryable = connectFailed || ((outcome === RESET || outcome === TIMEOUT || outcome <= DISCARDED) &&
      methodOk && replayable);
    if (
      retryable && budgetOk && !ctx.aborted && !ctx.res.headSent &&
      (retries > 0 || rs.budget.allows(policy!.budget))
    ) {
      const delay = backoff(policy!, retries + 1);
      if (end + delay < totalDeadline) {
        if (retries === 0) rs.budget.retrying++;
        retries++;
        obs?.retry?.(up.name, retryReason(outcome));
        if (delay >= 1) await new Promise((r) => setTimeout(r, delay));
        if (!ctx.aborted) {
          exclude = ep;
          continue;
        }
        ctx.res.abort();
        return true;
      }
    }
    await respondFailure(ctx, outcome);
    return retries > 0;
  }
}

function retryReason(outcome: number): string {
  return outcome <= DISCARDED
    ? String(DISCARDED - outcome)
    : outcome === CONNECT_REFUSED || outcome === CONNECT_TIMEOUT
    ? "connect"
    : outcome === RESET
    ? "reset"
    : "timeout";
}

/** The gateway's answer for a failed last attempt. */
function respondFailure(ctx: RequestContext, outcome: number): Promise<void> {
  switch (outcome) {
    case CONNECT_REFUSED:
      return respondError(ctx, 502, "upstream connection refused");
    case CONNECT_TIMEOUT:
      return respondError(ctx, 504, "upstream connect timeout");
    case TIMEOUT:
      return respondError(ctx, 504, "upstream timeout");
    case RESET:
      return respondError(ctx, 502, "upstream connection reset");
    case PROTOCOL:
      return respondError(ctx, 502, "invalid upstream response");
    default: {
      // A discarded retryable status that can no longer be retried.
      const status = DISCARDED - outcome;
      return respondError(ctx, status, "upstream answered " + status);
    }
  }
}

/** 503 at once for an open circuit, with Retry-After. */
async function failFast(ctx: RequestContext, ep: Endpoint, now: number, retried: boolean): Promise<boolean> {
  await respondError(ctx, 503, "upstream circuit open", [[
    "retry-after",
    String(ep.breaker!.retryAfter(now)),
  ]]);
  return retried;
}

/** One attempt on `ep` (with the stale-connection retry of the plain path). */
async function attempt(
  ctx: RequestContext,
  up: ProxyUpstream,
  ep: Endpoint,
  target: string,
  opt: ForwardOptions,
  perTry: number,
  totalDeadline: number,
  discard: ReadonlySet<number> | null,
  obs: ProxyObserver | null,
): Promise<number> {
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
  const t0 = performance.now();
  ep.begin();
  let status = 0;
  try {
    for (let stale = 0;; stale++) {
      let pc = stale === 0 ? pool.takeIdle(Date.now()) : null;
      if (pc === null) {
        try {
          pc = await pool.openNew(Math.min(opt.connectTimeout, Math.max(1, totalDeadline - Date.now())));
        } catch (e) {
          const kind = e instanceof ConnectError ? e.kind : "refused";
          obs?.upstreamError(up.name, ep.address, "connect_" + kind);
          return kind === "timeout" ? CONNECT_TIMEOUT : CONNECT_REFUSED;
        }
      }
      try {
        status = await exchange(ctx, pc, head, perTry, totalDeadline, discard);
        return status;
      } catch (e) {
        if (!(e instanceof UpstreamFailure)) throw e;
        if (
          e.retryableStale && pc.reused && stale === 0 && body.length === 0 && IDEMPOTENT.has(ctx.method) &&
          !ctx.aborted
        ) continue;
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
        return e.kind === "timeout" ? TIMEOUT : e.kind === "reset" ? RESET : PROTOCOL;
      }
    }
  } finally {
    ep.end();
    if (status > 0) obs?.upstream(up.name, ep.address, status, (performance.now() - t0) / 1000);
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
