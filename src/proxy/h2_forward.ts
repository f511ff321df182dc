/**
 * Forwarding over upstream HTTP/2 (Loom's own HTTP/2 client): every gRPC call,
 * gRPC-Web translated to gRPC, and any request to an upstream declared
 * `protocol: h2 | h2c`.
 *
 * Trailers cross in both directions; a trailers-only upstream answer stays
 * trailers-only (one HEADERS frame with END_STREAM), which gRPC clients need
 * to see the status. `grpc-timeout` shortens the route's deadline and is
 * sent upstream as the time that is left.
 *
 * Upstreams with resilience blocks go through the same loop as HTTP/1.1
 * (resilient.ts: bulkhead, circuit breakers, outlier detection, retries);
 * gRPC calls are resent only when the upstream cannot have processed them
 * (connect failure, refused stream), request bodies up to the retry policy's
 * `max_body_size` being recorded as they stream.
 */
import { field } from "../http2/fields.ts";
import { concat } from "../net/bytes.ts";
import { ErrorCode } from "../http2/frame.ts";
import { H2Error, type H2Stream } from "../http2/connection.ts";
import type { RequestContext } from "../core/context.ts";
import { HeaderList, isConnectionField } from "../core/headers.ts";
import { ConnectError } from "../upstream/pool.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { Upstream } from "../upstream/upstream.ts";
import {
  applyUpstreamHooks,
  connectionTokens,
  filterResponseHeaders,
  h2RequestFields,
  isHopByHop,
  upstreamAuthority,
  upstreamRequestHead,
} from "./header_policy.ts";
import { respondError } from "../core/respond.ts";
import { BodyLimitError } from "../core/body_limit.ts";
import type { ForwardOptions, ProxyObserver } from "./forward.ts";
import {
  ANSWERED,
  type AttemptProtocol,
  BodyRecorder,
  type BodyReplay,
  CLIENT,
  CONNECT_REFUSED,
  CONNECT_TIMEOUT,
  DISCARDED,
  forwardResilient,
  PROTOCOL,
  REFUSED,
  RESET,
  respondFailure,
  TIMEOUT,
} from "./resilient.ts";
import { type H2Lease, h2PoolFor } from "../upstream/h2_pool.ts";
import { addGrpcWebCors, encodeGrpcMessage, grpcContentType, GrpcStatus } from "../core/grpc_reply.ts";
import { formatGrpcTimeout, parseGrpcTimeout } from "../grpc/timeout.ts";
import { Base64Decoder, Base64Encoder, trailerFrame } from "../grpc/web.ts";

/** HTTP/2 fields ([name, value, ...]) into a HeaderList, skipping pseudo fields and, with `dropConnection`, connection-specific ones. */
function toHeaderList(f: string[], dropConnection = true): HeaderList {
  const into = new HeaderList();
  for (let i = 0; i < f.length; i += 2) {
    if (f[i][0] !== ":" && !(dropConnection && isConnectionField(f[i]))) into.append(f[i], f[i + 1]);
  }
  return into;
}

/** The HTTP/2 side of the resilient loop (bulkhead, breakers, outlier detection, retries). */
const H2: AttemptProtocol = {
  attempt: h2Attempt,
  // Bodies are recorded while they stream (never buffered first: streaming calls need them live).
  keep: (ctx, policy) => Promise.resolve(new BodyRecorder(ctx, policy.maxBody)),
  fail: respondFailure,
};

/**
 * Forwards `ctx` over HTTP/2 to an endpoint of `up`. Always finishes the
 * client response (or resets it) before resolving. Upstreams with resilience
 * blocks take the shared resilient loop; the others one plain attempt.
 */
export async function forwardH2(
  ctx: RequestContext,
  up: Upstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  // The client's deadline (grpc-timeout) shortens the route's.
  let total = opt.totalTimeout;
  if (ctx.grpc !== 0) {
    const t = parseGrpcTimeout(ctx.headers.get("grpc-timeout"));
    if (t >= 0 && t < total) total = t;
  }
  if (opt.resilient === true) return forwardResilient(ctx, up, target, opt, obs, H2, total);
  const ep = up.select(ctx);
  if (ep === null) return respondError(ctx, 503, "no healthy upstream endpoint");
  ctx.upstreamAddr = ep.address;
  try {
    const outcome = await h2Attempt(
      ctx,
      up,
      ep,
      target,
      opt,
      opt.perTryTimeout,
      Date.now() + total,
      null,
      obs,
      null,
    );
    if (outcome <= 0 && outcome !== CLIENT && outcome !== ANSWERED) await respondFailure(ctx, outcome);
  } finally {
    ctx.endTime = performance.now();
  }
}

/** HTTP-equivalent of a gRPC status for verdicts (as Envoy maps them): server-side failures are 5xx. */
function grpcVerdict(grpcStatus: string | undefined, httpStatus: number): number {
  switch (grpcStatus) {
    case "2": // UNKNOWN
    case "13": // INTERNAL
    case "15": // DATA_LOSS
      return 500;
    case "4": // DEADLINE_EXCEEDED
      return 504;
    case "14": // UNAVAILABLE
      return 503;
    default:
      return httpStatus;
  }
}

/**
 * One attempt on `ep`: a stream on a pooled session. Resolves to an outcome of
 * resilient.ts: the response's status (for gRPC, a failing grpc-status as its
 * HTTP equivalent, so breakers and outlier detection see it), or a failure.
 * A stream refused unprocessed on a session that was going away is resent once
 * on a fresh session when it has no body (as the HTTP/1.1 path does with a
 * stale kept-alive connection).
 */
async function h2Attempt(
  ctx: RequestContext,
  up: Upstream,
  ep: Endpoint,
  target: string,
  opt: ForwardOptions,
  perTry: number,
  deadline: number,
  discard: ReadonlySet<number> | null,
  obs: ProxyObserver | null,
  replay: BodyReplay | null,
): Promise<number> {
  const grpc = ctx.grpc;
  const pools = h2PoolFor(up.pool(ep));
  // Traced requests: the attempt's span, opened before the head so upstream_request hooks see it.
  const span = ctx.trace === null ? null : ctx.trace.startAttempt(up.name, ep.address, target);
  let failure = "";
  const head = upstreamRequestHead(
    ctx,
    target,
    upstreamAuthority(ctx, opt, ep.hostname, ep.port, pools.secure),
    opt.trustedProxies ?? null,
  );
  applyUpstreamHooks(ctx, head);
  const t0 = performance.now();
  const meter = { status: 0 };
  ep.begin();
  try {
    for (let fresh = 0;; fresh++) {
      failure = "";
      let lease: H2Lease;
      try {
        lease = await pools.acquire(Math.min(opt.connectTimeout, Math.max(1, deadline - Date.now())));
      } catch (e) {
        const kind = e instanceof ConnectError ? e.kind : "refused";
        obs?.upstreamError(up.name, ep.address, "connect_" + kind);
        failure = "connect_" + kind;
        return kind === "timeout" ? CONNECT_TIMEOUT : CONNECT_REFUSED;
      }
      try {
        // For gRPC, the time left when the stream opens.
        const timeout = grpc !== 0 ? formatGrpcTimeout(deadline - Date.now()) : null;
        const fields = h2RequestFields(ctx, head, pools.secure, timeout);
        return await runStream(ctx, lease, fields, deadline, perTry, discard, replay, meter);
      } catch (e) {
        if (!(e instanceof H2Failure)) throw e;
        failure = ctx.aborted ? "client_aborted" : e.kind;
        if (ctx.aborted) {
          ctx.res.abort();
          return CLIENT;
        }
        if (e.status > 0) {
          // The upstream stream was cancelled; the client gets the status, or a reset once its head is out.
          await respondError(ctx, e.status, e.message);
          return CLIENT;
        }
        if (e.kind === "refused") {
          if (fresh === 0 && ctx.body.length === 0) continue;
          obs?.upstreamError(up.name, ep.address, "refused");
          return REFUSED;
        }
        obs?.upstreamError(up.name, ep.address, e.kind);
        meter.status = e.kind === "timeout" ? 504 : 502;
        if (ctx.res.headSent) {
          // Part of the response is out: end it as well as the protocol allows.
          if (grpc !== 0) {
            await endWithGrpcStatus(
              ctx,
              e.kind === "timeout" ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.UNAVAILABLE,
              e.message,
            );
          } else ctx.res.abort();
          return ANSWERED;
        }
        return e.kind === "timeout" ? TIMEOUT : e.kind === "protocol" ? PROTOCOL : RESET;
      } finally {
        lease.done();
      }
    }
  } finally {
    ep.end();
    if (meter.status > 0) obs?.upstream(up.name, ep.address, meter.status, (performance.now() - t0) / 1000);
    if (span !== null) ctx.trace!.endAttempt(span, meter.status, failure);
  }
}

class H2Failure extends Error {
  /**
   * `refused`: the upstream declined the stream before processing it (REFUSED_STREAM, GOAWAY).
   * `status` > 0: the client's fault, answered with it (413: the request body passed a body_limit).
   */
  constructor(
    readonly kind: "reset" | "timeout" | "protocol" | "refused",
    message: string,
    readonly status = 0,
  ) {
    super(message);
  }
}

/** Ends an already started gRPC response with a status in the trailers. */
async function endWithGrpcStatus(ctx: RequestContext, code: number, message: string): Promise<void> {
  const t = new HeaderList();
  t.append("grpc-status", String(code));
  t.append("grpc-message", encodeGrpcMessage(message));
  if (ctx.grpc >= 2) {
    try {
      await ctx.res.write(
        ctx.grpc === 3
          ? new TextEncoder().encode(btoa(String.fromCharCode(...trailerFrame(t))))
          : trailerFrame(t),
      );
      await ctx.res.end();
    } catch {
      ctx.res.abort();
    }
    return;
  }
  await ctx.res.end(t).catch(() => ctx.res.abort());
}

/** What a stream error means for the attempt. */
function streamFailure(e: unknown, headSeen: boolean): H2Failure {
  if (e instanceof H2Failure) return e;
  if (e instanceof H2Error) {
    // REFUSED_STREAM before any response, or a stream above a GOAWAY's last id: not processed (RFC 9113 8.7).
    if (e.code === ErrorCode.REFUSED_STREAM && !headSeen) {
      return new H2Failure("refused", "upstream refused the stream");
    }
    if (e.code === ErrorCode.PROTOCOL_ERROR) {
      return new H2Failure("protocol", "upstream HTTP/2 protocol error");
    }
    return new H2Failure("reset", `upstream stream reset (code ${e.code})`);
  }
  return new H2Failure("reset", "upstream stream error: " + (e as Error).message);
}

/** Streams the client's request body (then its trailers) into `stream`; stops when `over()`. */
async function upload(
  ctx: RequestContext,
  stream: H2Stream,
  text: boolean,
  over: () => boolean,
): Promise<void> {
  const dec = text ? new Base64Decoder() : null;
  for (;;) {
    const chunk = await ctx.body.read();
    // A settled attempt must not write into a stream a retry replaced.
    if (over()) return;
    if (chunk === null) break;
    const data = dec !== null ? dec.push(chunk) : chunk;
    if (data.length === 0) continue;
    await stream.write(data);
  }
  const t = ctx.body.trailers;
  let fields: string[] | null = null;
  if (t !== null && t.size > 0) {
    fields = [];
    for (let i = 0; i < t.size; i++) if (!isHopByHop(t.keys[i])) fields.push(t.keys[i], t.values[i]);
  }
  await stream.end(fields);
}

/**
 * Runs one stream: upload, response head, body and trailers. Resolves to the
 * outcome (see {@linkcode h2Attempt}); `meter.status` gets the HTTP status.
 * A response whose status is in `discard` is dropped unread (the stream is
 * cancelled) while the body can still be replayed, for a retry. Throws
 * H2Failure when the stream fails.
 */
async function runStream(
  ctx: RequestContext,
  lease: H2Lease,
  fields: string[],
  deadline: number,
  perTry: number,
  discard: ReadonlySet<number> | null,
  replay: BodyReplay | null,
  meter: { status: number },
): Promise<number> {
  const grpc = ctx.grpc;
  const web = grpc >= 2;
  const text = grpc === 3;
  const hasBody = ctx.body.length !== 0;
  let stream: H2Stream;
  try {
    stream = lease.conn.request(fields, !hasBody);
  } catch (e) {
    // The connection is closing or got a GOAWAY meanwhile: no stream was opened, nothing was sent.
    throw new H2Failure("refused", "upstream connection going away: " + (e as Error).message);
  }
  let failure: H2Failure | null = null;
  let over = false;
  let headSeen = false;
  const fail = (e: H2Failure) => {
    if (failure !== null || over) return;
    failure = e;
    stream.reset(ErrorCode.CANCEL);
  };
  const headTimer = setTimeout(() => {
    if (!headSeen) fail(new H2Failure("timeout", "upstream timeout"));
  }, Math.max(1, Math.min(perTry, deadline - Date.now())));
  const totalTimer = setTimeout(() => {
    fail(new H2Failure("timeout", grpc !== 0 ? "deadline exceeded" : "upstream timeout"));
  }, Math.max(1, deadline - Date.now()));
  ctx.onAbort = () => fail(new H2Failure("reset", "client went away"));
  try {
    if (hasBody) {
      upload(ctx, stream, text, () => failure !== null || over).catch((e) => {
        // A failed write means the stream died: the response side reports that. A failed read is the client.
        if (e instanceof BodyLimitError) fail(new H2Failure("reset", e.message, e.status));
        else if (!(e instanceof H2Error)) fail(new H2Failure("reset", "client request body failed"));
      });
    }
    let head: string[];
    try {
      head = await stream.response;
    } catch (e) {
      throw failure ?? streamFailure(e, false);
    }
    headSeen = true;
    clearTimeout(headTimer);
    const status = meter.status = Number(field(head, ":status"));
    if (discard !== null && discard.has(status) && (replay === null || replay.replayable())) {
      // A retryable status: drop it unread, the resilient loop retries.
      over = true;
      stream.reset(ErrorCode.CANCEL);
      return DISCARDED - status;
    }
    let grpcStatus = grpc !== 0 ? field(head, "grpc-status") : undefined;
    // The response rule of header_policy.ts: hop-by-hop and Connection-listed fields out, Via "2 loom".
    const out = toHeaderList(head, false);
    filterResponseHeaders(out, connectionTokens(out), "2", false);
    // END_STREAM on the head: a trailers-only answer (gRPC errors); keep it one frame.
    const trailersOnly = stream.headersEnded;
    if (web) {
      out.set("content-type", grpcContentType(grpc));
      addGrpcWebCors(ctx, out);
    }
    if (grpc !== 0 && out.get("content-type") === undefined) {
      out.append("content-type", grpcContentType(grpc));
    }
    try {
      ctx.res.writeHead(status, out, trailersOnly ? 0 : -1);
    } catch {
      fail(new H2Failure("reset", "client went away"));
      throw failure!;
    }
    const enc = text ? new Base64Encoder() : null;
    for (;;) {
      let d: Uint8Array | null;
      try {
        d = await stream.read();
      } catch (e) {
        throw failure ?? streamFailure(e, true);
      }
      if (d === null) break;
      try {
        await ctx.res.write(enc !== null ? enc.push(d) : d);
      } catch {
        fail(new H2Failure("reset", "client went away"));
        throw failure!;
      }
    }
    const t = stream.trailers;
    const trailers = t !== null ? toHeaderList(t) : null;
    if (grpc !== 0 && t !== null) grpcStatus = field(t, "grpc-status") ?? grpcStatus;
    try {
      if (web && trailers !== null) {
        // gRPC-Web carries the trailers as the last, flagged frame of the body.
        let frame = trailerFrame(trailers);
        if (enc !== null) {
          const head = enc.push(frame), tail = enc.flush();
          frame = tail.length === 0 ? head : concat([head, tail]);
        }
        await ctx.res.write(frame);
        await ctx.res.end();
      } else {
        if (enc !== null) {
          const rest = enc.flush();
          if (rest.length > 0) await ctx.res.write(rest);
        }
        await ctx.res.end(trailers);
      }
    } catch {
      fail(new H2Failure("reset", "client went away"));
      throw failure!;
    }
    over = true;
    return grpc !== 0 ? grpcVerdict(grpcStatus, status) : status;
  } finally {
    clearTimeout(headTimer);
    clearTimeout(totalTimer);
    ctx.onAbort = null;
  }
}
