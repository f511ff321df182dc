/**
 * Forwarding over upstream HTTP/2 (node:http2 sessions): every gRPC call,
 * gRPC-Web translated to gRPC, and any request to an upstream declared
 * `protocol: h2 | h2c`.
 *
 * Trailers cross in both directions (request trailers on 'wantTrailers',
 * response trailers from 'trailers'); a trailers-only upstream answer stays
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
import http2 from "node:http2";
import type { RequestContext } from "../gateway/context.ts";
import { HeaderList } from "../gateway/headers.ts";
import { ConnectError } from "../upstream/pool.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { isHopByHop } from "./headers.ts";
import { respondError } from "./errors.ts";
import type { ForwardOptions, ProxyObserver, ProxyUpstream } from "./forward.ts";
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
import { h2PoolFor } from "./h2_client.ts";
import {
  addGrpcWebCors,
  encodeGrpcMessage,
  formatGrpcTimeout,
  grpcContentType,
  GrpcStatus,
  parseGrpcTimeout,
} from "./grpc.ts";
import { Base64Decoder, Base64Encoder, trailerFrame } from "./grpc_web.ts";

type H2Headers = http2.OutgoingHttpHeaders;

/** Response fields that must not be relayed (connection-specific in HTTP/1.1, forbidden in HTTP/2). */
function dropResponseField(k: string): boolean {
  return k[0] === ":" || k === "connection" || k === "keep-alive" || k === "transfer-encoding" ||
    k === "proxy-connection" || k === "upgrade" || k === "content-length";
}

/** Node's header object (values may be arrays) into a HeaderList, skipping pseudo and hop-by-hop fields. */
function toHeaderList(h: http2.IncomingHttpHeaders, into = new HeaderList()): HeaderList {
  for (const k in h) {
    if (dropResponseField(k)) continue;
    const v = h[k];
    if (Array.isArray(v)) { for (const x of v) into.append(k, x); }
    else if (v !== undefined) into.append(k, String(v));
  }
  return into;
}

/** The request head sent upstream as node:http2 headers. */
function upstreamHeaders(ctx: RequestContext, target: string, authority: string, secure: boolean): H2Headers {
  const out: H2Headers = {
    ":method": ctx.method,
    ":path": target,
    ":authority": authority,
    ":scheme": secure ? "https" : "http",
  };
  const { keys, values } = ctx.headers;
  let xff: string | undefined;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (isHopByHop(k) || k === "http2-settings" || k[0] === ":") continue;
    if (k === "x-forwarded-for") {
      xff = xff === undefined ? values[i] : xff + ", " + values[i];
      continue;
    }
    const prev = out[k];
    if (prev === undefined) out[k] = values[i];
    else if (Array.isArray(prev)) prev.push(values[i]);
    else out[k] = k === "cookie" ? prev + "; " + values[i] : [String(prev), values[i]];
  }
  out["x-forwarded-for"] = xff === undefined ? ctx.clientIp : xff + ", " + ctx.clientIp;
  out["x-forwarded-proto"] = ctx.scheme;
  if (out["x-request-id"] === undefined && ctx.id !== "") out["x-request-id"] = ctx.id;
  out["via"] = out["via"] === undefined ? "2 loom" : out["via"] + ", 2 loom";
  return out;
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
  up: ProxyUpstream,
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
  up: ProxyUpstream,
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
  const t0 = performance.now();
  const meter = { status: 0 };
  ep.begin();
  try {
    for (let fresh = 0;; fresh++) {
      let lease: { session: http2.ClientHttp2Session; done: () => void };
      try {
        lease = await pools.acquire(Math.min(opt.connectTimeout, Math.max(1, deadline - Date.now())));
      } catch (e) {
        const kind = e instanceof ConnectError ? e.kind : "refused";
        obs?.upstreamError(up.name, ep.address, "connect_" + kind);
        return kind === "timeout" ? CONNECT_TIMEOUT : CONNECT_REFUSED;
      }
      try {
        const headers = requestHeaders(ctx, target, opt, ep, pools.secure, deadline);
        return await runStream(ctx, lease, headers, deadline, perTry, discard, replay, meter);
      } catch (e) {
        if (!(e instanceof H2Failure)) throw e;
        if (ctx.aborted) {
          ctx.res.abort();
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
  }
}

/** The request head for one attempt (gRPC: the time left as grpc-timeout; gRPC-Web translated). */
function requestHeaders(
  ctx: RequestContext,
  target: string,
  opt: ForwardOptions,
  ep: Endpoint,
  secure: boolean,
  deadline: number,
): H2Headers {
  const authority = opt.hostRewrite ??
    (opt.preserveHost && ctx.authority !== "" ? ctx.authority : ep.hostname + ":" + ep.port);
  const headers = upstreamHeaders(ctx, target, authority, secure);
  if (ctx.grpc !== 0) {
    headers["te"] = "trailers";
    headers["grpc-timeout"] = formatGrpcTimeout(deadline - Date.now());
    if (ctx.grpc >= 2) {
      // gRPC-Web → gRPC: same framing of messages, trailers move back into HTTP/2 trailers.
      const ct = String(headers["content-type"] ?? "");
      const suffix = ct.replace(/^application\/grpc-web(-text)?/, "");
      headers["content-type"] = "application/grpc" + suffix;
      delete headers["x-grpc-web"];
      delete headers["content-length"];
    }
  }
  return headers;
}

class H2Failure extends Error {
  /** `refused`: the upstream declined the stream before processing it (REFUSED_STREAM, GOAWAY). */
  constructor(readonly kind: "reset" | "timeout" | "protocol" | "refused", message: string) {
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

/**
 * Runs one stream: upload, response head, body and trailers. Resolves to the
 * outcome (see {@linkcode h2Attempt}); `meter.status` gets the HTTP status.
 * A response whose status is in `discard` is dropped unread (the stream is
 * cancelled) while the body can still be replayed, for a retry.
 */
function runStream(
  ctx: RequestContext,
  lease: { session: http2.ClientHttp2Session },
  headers: H2Headers,
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
  let stream: http2.ClientHttp2Stream;
  try {
    stream = lease.session.request(headers, { endStream: !hasBody, waitForTrailers: hasBody });
  } catch (e) {
    // The session is closing or got a GOAWAY meanwhile: no stream was opened, nothing was sent.
    return Promise.reject(new H2Failure("refused", "upstream session going away: " + (e as Error).message));
  }
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    let headSent = false;
    let status = 0;
    let grpcStatus: string | undefined;
    let trailers: HeaderList | null = null;
    let timedOut = false;
    const headTimer = setTimeout(() => {
      if (!headSent) fail(new H2Failure("timeout", "upstream timeout"));
    }, Math.max(1, Math.min(perTry, deadline - Date.now())));
    const totalTimer = setTimeout(() => {
      timedOut = true;
      fail(new H2Failure("timeout", grpc !== 0 ? "deadline exceeded" : "upstream timeout"));
    }, Math.max(1, deadline - Date.now()));
    const cleanup = () => {
      clearTimeout(headTimer);
      clearTimeout(totalTimer);
      ctx.onAbort = null;
    };
    const fail = (e: H2Failure) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(e);
    };
    ctx.onAbort = () => {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      fail(new H2Failure("reset", "client went away"));
    };

    // Upload (request body, then request trailers).
    if (hasBody) {
      const dec = text ? new Base64Decoder() : null;
      stream.on("wantTrailers", () => {
        const t = ctx.body.trailers;
        const out: H2Headers = {};
        if (t !== null) {
          for (let i = 0; i < t.size; i++) if (!isHopByHop(t.keys[i])) out[t.keys[i]] = t.values[i];
        }
        // Not inside the 'wantTrailers' callback: see H2StreamWriter in listeners/node_h2.ts (Deno crash).
        setImmediate(() => {
          try {
            stream.sendTrailers(out);
          } catch { /* stream gone */ }
        });
      });
      (async () => {
        try {
          for (;;) {
            const chunk = await ctx.body.read();
            // A settled attempt must not write into a stream a retry replaced.
            if (settled) return;
            if (chunk === null) break;
            const data = dec !== null ? dec.push(chunk) : chunk.slice();
            if (data.length === 0) continue;
            if (!stream.write(data)) await new Promise((r) => stream.once("drain", r));
            if (settled) return;
          }
          stream.end();
        } catch {
          fail(new H2Failure("reset", "client request body failed"));
        }
      })();
    }

    // Deno's node:http2 client can emit 'data' (and 'end') before 'response' (observed with
    // grpcio upstreams): body work waits behind `gate`, which opens once the head is relayed,
    // and runs in order on `chain`.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => openGate = r);
    let chain: Promise<void> = gate;
    stream.on("response", (h, flags) => {
      if (settled) return;
      headSent = true;
      clearTimeout(headTimer);
      status = meter.status = Number(h[":status"]);
      if (discard !== null && discard.has(status) && (replay === null || replay.replayable())) {
        // A retryable status: drop it unread, the resilient loop retries.
        settled = true;
        cleanup();
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        resolve(DISCARDED - status);
        return;
      }
      if (grpc !== 0 && h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
      const out = toHeaderList(h);
      out.append("via", "2 loom");
      // END_STREAM on the head: a trailers-only answer (gRPC errors); keep it one frame.
      const trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
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
      }
      openGate();
    });
    const enc = text ? new Base64Encoder() : null;
    stream.on("data", (d: Uint8Array) => {
      if (settled) return;
      stream.pause();
      chain = chain.then(() => {
        if (settled) return;
        return ctx.res.write(enc !== null ? enc.push(d) : d).then(
          () => void stream.resume(),
          () => fail(new H2Failure("reset", "client went away")),
        );
      });
    });
    stream.on("trailers", (h) => {
      trailers = toHeaderList(h);
      if (grpc !== 0 && h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
    });
    let ending = false;
    stream.on("end", () => {
      if (settled) return;
      // 'close' follows 'end' while the tail is still being written: it must not count as a reset.
      ending = true;
      chain = chain.then(async () => {
        if (settled) return;
        try {
          if (web && trailers !== null) {
            // gRPC-Web carries the trailers as the last, flagged frame of the body.
            let frame = trailerFrame(trailers);
            if (enc !== null) frame = concat(enc.push(frame), enc.flush());
            await ctx.res.write(frame);
            await ctx.res.end();
          } else {
            if (enc !== null) {
              const rest = enc.flush();
              if (rest.length > 0) await ctx.res.write(rest);
            }
            await ctx.res.end(trailers);
          }
          settled = true;
          cleanup();
          resolve(grpc !== 0 ? grpcVerdict(grpcStatus, status) : status);
        } catch {
          fail(new H2Failure("reset", "client went away"));
        }
      });
    });
    // REFUSED_STREAM before any response: the upstream did not process it (RFC 9113 8.7); so
    // are streams above a GOAWAY's last stream id, which nghttp2 closes with that code too.
    const refused = () => !headSent && stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
    stream.on("close", () => {
      if (settled || ending || timedOut) return;
      const code = stream.rstCode;
      if (refused()) fail(new H2Failure("refused", "upstream refused the stream"));
      else fail(new H2Failure("reset", `upstream stream reset (code ${code})`));
    });
    stream.on("error", (e: Error) => {
      if (refused()) fail(new H2Failure("refused", "upstream refused the stream"));
      else fail(new H2Failure("reset", "upstream stream error: " + e.message));
    });
  });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
