/**
 * The client of the gRPC health checking protocol
 * (`grpc.health.v1.Health/Check`) on one HTTP/2 connection. How that
 * connection is opened (h2 or h2c, TLS settings, its own pool) is the
 * caller's business: the upstream health checker (src/upstream/health_check.ts).
 *
 * @module
 */
import type { H2Connection } from "../http2/connection.ts";
import { field } from "../http2/fields.ts";
import { ErrorCode } from "../http2/frame.ts";
import { concat } from "../net/bytes.ts";
import { FRAME_PREFIX, grpcFrame, grpcFrameLength } from "./frame.ts";
import { formatGrpcTimeout } from "./timeout.ts";

/** One health check call. */
export interface HealthCheckCall {
  /** `:authority`: the endpoint's "host:port". */
  authority: string;
  /** "https" for h2 over TLS, "http" for h2c. */
  scheme: "http" | "https";
  /** The service asked about ("" = the server as a whole). */
  service: string;
  /** When the call is cancelled (ms since the epoch); sent as its grpc-timeout. */
  deadline: number;
}

/**
 * Calls `grpc.health.v1.Health/Check` on `conn`: true only when the call
 * returns OK with status SERVING; false for any other answer, a reset stream,
 * a lost connection or the deadline.
 */
export async function grpcHealthCheck(conn: H2Connection, call: HealthCheckCall): Promise<boolean> {
  const name = new TextEncoder().encode(call.service);
  // HealthCheckRequest { string service = 1; } (length < 128 for any sane name).
  const req = name.length === 0 ? new Uint8Array(0) : new Uint8Array([0x0a, name.length, ...name]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const stream = conn.request([
      ":method",
      "POST",
      ":scheme",
      call.scheme,
      ":authority",
      call.authority,
      ":path",
      "/grpc.health.v1.Health/Check",
      "content-type",
      "application/grpc",
      "te",
      "trailers",
      "grpc-timeout",
      formatGrpcTimeout(call.deadline - Date.now()),
    ], false);
    timer = setTimeout(() => stream.reset(ErrorCode.CANCEL), Math.max(1, call.deadline - Date.now()));
    await stream.write(grpcFrame(req));
    await stream.end();
    const head = await stream.response;
    const chunks: Uint8Array[] = [];
    for (let d = await stream.read(); d !== null; d = await stream.read()) chunks.push(d);
    if (field(stream.trailers ?? head, "grpc-status") !== "0") return false;
    // HealthCheckResponse { ServingStatus status = 1; } SERVING = 1: bytes 08 01 after the prefix.
    const body = concat(chunks);
    const len = grpcFrameLength(body, 0);
    return len >= 2 && body.length >= FRAME_PREFIX + len && body[FRAME_PREFIX] === 0x08 &&
      body[FRAME_PREFIX + 1] === 0x01;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
