/**
 * How a middleware refuses a request: one call that answers (JSON error, or a
 * gRPC status for gRPC clients), and records why, so every rejection is
 * counted in `loom_rejections_total{route,middleware,reason}` and appears in
 * the access log's `rejection` field.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import { respond, respondError } from "../core/respond.ts";

/**
 * Answers `status` with `message` and records `middleware/reason`. `headers`
 * are added to the answer (e.g. WWW-Authenticate, Retry-After).
 */
export function reject(
  ctx: RequestContext,
  middleware: string,
  reason: string,
  status: number,
  message: string,
  headers?: [string, string][],
): Promise<void> {
  ctx.rejection = middleware + "/" + reason;
  return respondError(ctx, status, message, headers);
}

/**
 * Refuses with an answer made elsewhere (an auth service's 401, 403 or
 * redirect, body included) and records `middleware/reason` like
 * {@link reject}. gRPC clients get the gRPC status of `status` with `message`
 * instead, as from {@link reject}.
 */
export function rejectWith(
  ctx: RequestContext,
  middleware: string,
  reason: string,
  status: number,
  message: string,
  headers: HeaderList,
  body: Uint8Array,
): Promise<void> {
  if (ctx.grpc !== 0 || ctx.res.headSent || ctx.aborted) {
    return reject(ctx, middleware, reason, status, message);
  }
  ctx.rejection = middleware + "/" + reason;
  if (ctx.id !== "" && !headers.has("x-request-id")) headers.append("x-request-id", ctx.id);
  return respond(ctx, status, headers, body);
}
