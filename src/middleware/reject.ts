/**
 * How a middleware refuses a request: one call that answers (JSON error, or a
 * gRPC status for gRPC clients), and records why, so every rejection is
 * counted in `loom_rejections_total{route,middleware,reason}` and appears in
 * the access log's `rejection` field.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { respondError } from "../core/respond.ts";

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
