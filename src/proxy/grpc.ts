/**
 * gRPC at the gateway: request classification, gateway errors as gRPC
 * statuses, `grpc-timeout`, and the gRPC health checking protocol for
 * upstream health checks. Forwarding itself is in h2_forward.ts.
 */
import { ErrorCode } from "../http2/frame.ts";
import type { RequestContext } from "../core/context.ts";
import { HeaderList } from "../core/headers.ts";
import { ConnectionPool } from "../upstream/pool.ts";
import { loadUpstreamTls } from "../upstream/tls.ts";
import { h2PoolFor } from "./h2_client.ts";
import type { UpstreamTlsConfig } from "../config/types.ts";
import type { ResponseWriter } from "../core/body.ts";
import { GrpcStatus } from "../core/grpc_reply.ts";
export {
  addGrpcWebCors,
  encodeGrpcMessage,
  grpcContentType,
  grpcKindOf,
  GrpcStatus,
  grpcStatusForHttp,
  respondGrpcError,
} from "../core/grpc_reply.ts";

/** Key in `ctx.vars` of the grpc-status the client was sent (see watchGrpcStatus). */
export const GRPC_STATUS_VAR = "loom.grpc_status";

/**
 * The grpc-status a gRPC request ended with, as a bounded label: "0".."16",
 * "other" for a non-standard value, "none" when none reached the client (a
 * reset stream, a client that went away).
 */
export function grpcStatusLabel(ctx: RequestContext): string {
  const v = ctx.vars.get(GRPC_STATUS_VAR) as string | undefined;
  if (v === undefined) return "none";
  const n = Number(v);
  return v !== "" && Number.isInteger(n) && n >= 0 && n <= 16 ? String(n) : "other";
}

/** grpc-status in a gRPC-Web trailer frame at `o` (flag 0x80, length, "name: value\r\n" lines), if whole. */
function statusInTrailerFrame(b: Uint8Array, o: number): string | undefined {
  if (b.length - o < 5 || b[o] !== 0x80) return undefined;
  const len = ((b[o + 1] << 24) | (b[o + 2] << 16) | (b[o + 3] << 8) | b[o + 4]) >>> 0;
  if (o + 5 + len !== b.length) return undefined;
  const m = /(?:^|\n)grpc-status:\s*([^\r\n]*)/i.exec(new TextDecoder().decode(b.subarray(o + 5)));
  return m === null ? undefined : m[1].trim();
}

/**
 * Sees the grpc-status on its way to the client, whoever produced it: the
 * upstream (trailers, or the head of a trailers-only answer), the gateway
 * (respondGrpcError) or a plugin. gRPC-Web carries it in the last body
 * frame (base64 for -text), which h2_forward writes in one piece.
 */
class GrpcStatusWriter implements ResponseWriter {
  constructor(private inner: ResponseWriter, private ctx: RequestContext) {}

  get headSent(): boolean {
    return this.inner.headSent;
  }

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    const s = headers.get("grpc-status");
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
    this.inner.writeHead(status, headers, bodyLength, reason);
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.ctx.grpc >= 2 && chunk.length < 16 * 1024) this.scanWeb(chunk);
    return this.inner.write(chunk);
  }

  end(trailers?: HeaderList | null): Promise<void> {
    const s = trailers?.get("grpc-status");
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
    return this.inner.end(trailers);
  }

  abort(): void {
    this.inner.abort();
  }

  private scanWeb(chunk: Uint8Array): void {
    let b = chunk;
    let s: string | undefined;
    if (this.ctx.grpc === 3) {
      // -text: the frame follows up to 2 bytes of the previous message in the same base64 run.
      const last = chunk[chunk.length - 1];
      if (last !== 61 /* = */ && chunk.length % 4 !== 0) return;
      try {
        b = Uint8Array.from(atob(String.fromCharCode(...chunk)), (c) => c.charCodeAt(0));
      } catch {
        return;
      }
      for (let o = 0; o < 3 && s === undefined; o++) s = statusInTrailerFrame(b, o);
    } else s = statusInTrailerFrame(b, 0);
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
  }
}

/** Wraps `ctx.res` of a gRPC / gRPC-Web request so the grpc-status sent is recorded (logs, metrics). */
export function watchGrpcStatus(ctx: RequestContext): void {
  ctx.res = new GrpcStatusWriter(ctx.res, ctx);
}

/** `grpc-timeout` in milliseconds (TimeoutValue + unit H M S m u n), or -1 when absent or invalid. */
export function parseGrpcTimeout(v: string | undefined): number {
  if (v === undefined || v.length < 2 || v.length > 9) return -1;
  const n = Number(v.slice(0, -1));
  if (!Number.isInteger(n) || n < 0) return -1;
  switch (v[v.length - 1]) {
    case "H":
      return n * 3_600_000;
    case "M":
      return n * 60_000;
    case "S":
      return n * 1000;
    case "m":
      return n;
    case "u":
      return Math.ceil(n / 1000);
    case "n":
      return Math.ceil(n / 1_000_000);
    default:
      return -1;
  }
}

/** `grpc-timeout` value for `ms` milliseconds (at most 8 digits, as the spec demands). */
export function formatGrpcTimeout(ms: number): string {
  const m = Math.max(1, Math.floor(ms));
  return m < 100_000_000 ? m + "m" : Math.ceil(m / 1000) + "S";
}

/** A gRPC message frame: flag byte, 4-byte big-endian length, payload. */
export function grpcFrame(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/**
 * gRPC health checking protocol (grpc.health.v1.Health/Check) against one
 * endpoint: true only when the call returns OK with status SERVING.
 * `endpoint` is "host:port"; `tls` makes it h2 over TLS (else h2c).
 * For the upstream health checker (src/upstream/health_check.ts).
 */
export async function grpcHealthCheck(
  endpoint: string,
  service: string,
  timeout: number,
  tls?: UpstreamTlsConfig,
): Promise<boolean> {
  const colon = endpoint.lastIndexOf(":");
  let hostname = endpoint.slice(0, colon);
  if (hostname.startsWith("[")) hostname = hostname.slice(1, -1);
  const port = Number(endpoint.slice(colon + 1));
  // A throwaway pool: health checks must not share (or be blocked by) the proxy's sessions.
  const pool = new ConnectionPool(
    hostname,
    port,
    { max_idle: 0, idle_timeout: 1000, max_connections: 0 },
    loadUpstreamTls(tls),
  );
  const deadline = Date.now() + timeout;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const { conn, done } = await h2PoolFor(pool).acquire(timeout);
    const name = new TextEncoder().encode(service);
    // HealthCheckRequest { string service = 1; } (length < 128 for any sane name).
    const req = name.length === 0 ? new Uint8Array(0) : new Uint8Array([0x0a, name.length, ...name]);
    const stream = conn.request([
      ":method",
      "POST",
      ":scheme",
      pool.tls !== null ? "https" : "http",
      ":authority",
      endpoint,
      ":path",
      "/grpc.health.v1.Health/Check",
      "content-type",
      "application/grpc",
      "te",
      "trailers",
      "grpc-timeout",
      formatGrpcTimeout(deadline - Date.now()),
    ], false);
    timer = setTimeout(() => stream.reset(ErrorCode.CANCEL), Math.max(1, deadline - Date.now()));
    try {
      await stream.write(grpcFrame(req));
      await stream.end();
      const head = await stream.response;
      const chunks: Uint8Array[] = [];
      for (let d = await stream.read(); d !== null; d = await stream.read()) chunks.push(d);
      const f = stream.trailers ?? head;
      let grpcStatus: string | undefined;
      for (let i = 0; i < f.length; i += 2) if (f[i] === "grpc-status") grpcStatus = f[i + 1];
      if (grpcStatus !== "0") return false;
      const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of chunks) (body.set(c, o), o += c.length);
      // HealthCheckResponse { ServingStatus status = 1; } SERVING = 1: bytes 08 01 after the 5-byte prefix.
      return body.length >= 7 && body[5] === 0x08 && body[6] === 0x01;
    } finally {
      done();
    }
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    pool.close();
  }
}
