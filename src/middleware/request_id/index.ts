/**
 * `request_id`: the top-level `request_id:` block. With
 * `response_header: true` every response carries the request's id (the
 * client's valid `X-Request-ID`, else the one Loom made) in `header`
 * (default `x-request-id`): the upstream's answers, plugins' and
 * middleware's local answers and Loom's own errors (which carry
 * `X-Request-ID` in any case). A `response` hook, so it costs one header set
 * per response and nothing when the block is absent.
 *
 * ```yaml
 * request_id:
 *   response_header: true
 *   header: x-request-id
 * ```
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";

/** The middleware returning the request id in `header`. */
export function requestIdHeader(header: string): Middleware {
  const name = header.toLowerCase();
  return {
    name: "request_id",
    response: (ctx, head) => {
      if (ctx.id !== "") head.headers.set(name, ctx.id);
    },
  };
}
