/**
 * Responses the gateway produces itself (errors, redirects): small JSON bodies
 * written through the context's ResponseWriter, whatever the protocol.
 */
import type { RequestContext } from "./context.ts";
import { HeaderList } from "./headers.ts";
import { respondGrpcError } from "./grpc_reply.ts";

const encoder = new TextEncoder();

/** Writes a complete response with a body held in memory. */
export async function respond(
  ctx: RequestContext,
  status: number,
  headers: HeaderList,
  body: string | Uint8Array,
): Promise<void> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  ctx.res.writeHead(status, headers, bytes.length);
  if (bytes.length > 0) await ctx.res.write(bytes);
  await ctx.res.end();
}

/** Writes `{"error": message, "status": status, "request_id": id}` with `status`. */
export function respondError(
  ctx: RequestContext,
  status: number,
  message: string,
  extra?: [string, string][],
): Promise<void> {
  if (ctx.res.headSent || ctx.aborted) {
    ctx.res.abort();
    return Promise.resolve();
  }
  // gRPC clients need HTTP 200 with a grpc-status, not an HTTP error.
  if (ctx.grpc !== 0) return respondGrpcError(ctx, status, message);
  const h = new HeaderList(["content-type"], ["content-type"], ["application/json"]);
  if (ctx.id !== "") h.append("x-request-id", ctx.id);
  if (extra) { for (const [n, v] of extra) h.append(n, v); }
  const body = `{"error":${JSON.stringify(message)},"status":${status},"request_id":${
    JSON.stringify(ctx.id)
  }}\n`;
  return respond(ctx, status, h, body);
}
