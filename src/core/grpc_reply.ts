/**
 * Local answers to gRPC requests: the HTTP → gRPC status mapping and the
 * trailers-only reply the gateway sends for its own errors. In core because
 * every local response (respond.ts) must answer a gRPC client in gRPC terms.
 */
import type { GrpcKind, RequestContext } from "./context.ts";
import { HeaderList } from "./headers.ts";

/** gRPC status codes used by the gateway. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** The gRPC flavour of a request from its content-type (only POSTs are gRPC). */
export function grpcKindOf(contentType: string | undefined): GrpcKind {
  if (contentType === undefined || !contentType.startsWith("application/grpc")) return 0;
  const rest = contentType.slice(16);
  if (rest === "" || rest[0] === "+" || rest[0] === ";") return 1;
  if (rest.startsWith("-web-text")) return 3;
  if (rest.startsWith("-web")) return 2;
  return 0;
}

/**
 * The gRPC status for a gateway-produced HTTP status (the mapping of
 * gRPC's "HTTP to gRPC Status Code Mapping", plus 504 → DEADLINE_EXCEEDED and
 * 404 → UNIMPLEMENTED, since an unrouted method is an unknown method).
 */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 408:
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 413:
    case 429:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** Percent-encodes a grpc-message value (gRPC spec: printable ASCII except "%"). */
export function encodeGrpcMessage(m: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(m)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** The response content-type for a gRPC flavour. */
export function grpcContentType(kind: GrpcKind): string {
  return kind === 3
    ? "application/grpc-web-text"
    : kind === 2
    ? "application/grpc-web+proto"
    : "application/grpc";
}

/** CORS fields a browser needs to read a gRPC-Web response. */
export function addGrpcWebCors(ctx: RequestContext, h: HeaderList): void {
  const origin = ctx.headers.get("origin");
  if (origin === undefined) return;
  h.set("access-control-allow-origin", origin);
  h.set("access-control-allow-credentials", "true");
  h.set("access-control-expose-headers", "grpc-status,grpc-message,grpc-status-details-bin,x-request-id");
  h.append("vary", "Origin");
}

/**
 * Answers a gRPC request with a trailers-only response: HTTP 200 and
 * grpc-status/grpc-message in the one HEADERS frame (HTTP/2), or in the
 * response head (gRPC-Web). Used for errors the gateway produces itself.
 */
export function respondGrpcError(ctx: RequestContext, httpStatus: number, message: string): Promise<void> {
  if (ctx.res.headSent || ctx.aborted) {
    ctx.res.abort();
    return Promise.resolve();
  }
  const code = grpcStatusForHttp(httpStatus);
  const h = new HeaderList();
  h.append("content-type", grpcContentType(ctx.grpc));
  h.append("grpc-status", String(code));
  h.append("grpc-message", encodeGrpcMessage(message));
  if (ctx.id !== "") h.append("x-request-id", ctx.id);
  if (ctx.grpc >= 2) addGrpcWebCors(ctx, h);
  ctx.res.writeHead(200, h, 0);
  return ctx.res.end();
}
