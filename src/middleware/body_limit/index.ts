/**
 * `body_limit`: refuses request bodies larger than `max` with 413, per route
 * or for every route.
 *
 * ```yaml
 * middleware:
 *   - body_limit: { max: 1MB }
 * ```
 *
 * A Content-Length over the limit is refused at once, before anything goes
 * upstream (and without reading the body). A body of unknown length (HTTP/1.1
 * chunked, HTTP/2 and HTTP/3 streams without content-length) is counted as it
 * streams, never buffered: the read that passes the limit fails with
 * `BodyLimitError` (src/core/body_limit.ts), the proxy aborts the upstream
 * request and answers 413 when no response head went out yet, else resets
 * the response. Either way the refusal counts as `body_limit/too_large` in
 * `loom_rejections_total` and the access log. Declared lengths need no
 * counting: the HTTP/1.1, HTTP/2 and HTTP/3 engines already refuse a body
 * longer than its Content-Length.
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";
import { limitBody } from "../../core/body_limit.ts";
import type { BodyLimitOptions } from "../../config/middleware/body_limit.ts";
import { reject } from "../reject.ts";

const NAME = "body_limit";
const REASON = "too_large";
const CLOSE: [string, string][] = [["connection", "close"]];

/** The middleware for `o`. */
export function bodyLimit(o: BodyLimitOptions): Middleware {
  const max = o.max;
  const message = `request body larger than ${max} bytes`;
  return {
    name: NAME,
    request: (ctx, next) => {
      const length = ctx.body.length;
      if (length > max) {
        // The unread body goes with the connection (HTTP/1.1), not through the next request.
        return reject(ctx, NAME, REASON, 413, message, CLOSE);
      }
      if (length < 0) {
        ctx.body = limitBody(ctx.body, max, () => {
          ctx.rejection = NAME + "/" + REASON;
        });
      }
      return next();
    },
  };
}
