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
 */
import http2 from "node:http2";
import type { RequestContext } from "../gateway/context.ts";
import { HeaderList } from "../gateway/headers.ts";
import { ConnectError } from "../upstream/pool.ts";
import { isHopByHop } from "./headers.ts";
import { respondError } from "./errors.ts";
import type { ForwardOptions, ProxyObserver, ProxyUpstream } from "./forward.ts";
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

/**
 * Forwards `ctx` over HTTP/2 to an endpoint of `up`. Always finishes the
 * client response (or resets it) before resolving.
 */
export async function forwardH2(
  ctx: RequestContext,
  up: ProxyUpstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
): Promise<void> {
  const ep = up.select(ctx);
  if (ep === null) return respondError(ctx, 503, "no healthy upstream endpoint");
  ctx.upstreamAddr = ep.address;
  const grpc = ctx.grpc;
  const web = grpc >= 2;
  // The client's deadline (grpc-timeout) shortens the route's.
  let total = opt.totalTimeout;
  if (grpc !== 0) {
    const t = parseGrpcTimeout(ctx.headers.get("grpc-timeout"));
    if (t >= 0 && t < total) total = t;
  }
  const deadline = Date.now() + total;
  const pools = h2PoolFor(up.pool(ep));
  ep.begin();
  let status = 0;
  let lease: { session: http2.ClientHttp2Session; done: () => void };
  try {
    try {
      lease = await pools.acquire(Math.min(opt.connectTimeout, Math.max(1, deadline - Date.now())));
    } catch (e) {
      const kind = e instanceof ConnectError ? e.kind : "refused";
      obs?.upstreamError(up.name, ep.address, "connect_" + kind);
      return await respondError(
        ctx,
        kind === "timeout" ? 504 : 503,
        kind === "timeout" ? "upstream connect timeout" : "upstream connection refused",
      );
    }
    const authority = opt.hostRewrite ??
      (opt.preserveHost && ctx.authority !== "" ? ctx.authority : ep.hostname + ":" + ep.port);
    const headers = upstreamHeaders(ctx, target, authority, pools.secure);
    if (grpc !== 0) {
      headers["te"] = "trailers";
      headers["grpc-timeout"] = formatGrpcTimeout(deadline - Date.now());
      if (web) {
        // gRPC-Web → gRPC: same framing of messages, trailers move back into HTTP/2 trailers.
        const ct = String(headers["content-type"] ?? "");
        const suffix = ct.replace(/^application\/grpc-web(-text)?/, "");
        headers["content-type"] = "application/grpc" + suffix;
        delete headers["x-grpc-web"];
        delete headers["content-length"];
      }
    }
    status = await runStream(ctx, lease, headers, deadline, opt.perTryTimeout);
  } catch (e) {
    if (!(e instanceof H2Failure)) throw e;
    if (ctx.aborted) {
      ctx.res.abort();
      return;
    }
    obs?.upstreamError(up.name, ep.address, e.kind);
    status = e.kind === "timeout" ? 504 : 502;
    if (ctx.res.headSent) {
      if (grpc !== 0) {
        await endWithGrpcStatus(
          ctx,
          e.kind === "timeout" ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.UNAVAILABLE,
          e.message,
        );
      } else ctx.res.abort();
      return;
    }
    return await respondError(ctx, e.kind === "timeout" ? 504 : grpc !== 0 ? 503 : 502, e.message);
  } finally {
    // deno-lint-ignore no-explicit-any
    (lease! as any)?.done();
    ep.end();
    const end = ctx.endTime = performance.now();
    if (status > 0) obs?.upstream(up.name, ep.address, status, (end - ctx.start) / 1000);
  }
}

class H2Failure extends Error {
  constructor(readonly kind: "reset" | "timeout" | "protocol", message: string) {
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

/** Runs one stream: upload, response head, body and trailers. Returns the HTTP status. */
function runStream(
  ctx: RequestContext,
  lease: { session: http2.ClientHttp2Session },
  headers: H2Headers,
  deadline: number,
  perTry: number,
): Promise<number> {
  const grpc = ctx.grpc;
  const web = grpc >= 2;
  const text = grpc === 3;
  const hasBody = ctx.body.length !== 0;
  const stream = lease.session.request(headers, { endStream: !hasBody, waitForTrailers: hasBody });
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    let headSent = false;
    let status = 0;
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
      status = Number(h[":status"]);
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
          resolve(status);
        } catch {
          fail(new H2Failure("reset", "client went away"));
        }
      });
    });
    stream.on("close", () => {
      if (settled || ending || timedOut) return;
      const code = stream.rstCode;
      fail(new H2Failure("reset", `upstream stream reset (code ${code})`));
    });
    stream.on("error", (e: Error) => fail(new H2Failure("reset", "upstream stream error: " + e.message)));
  });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
