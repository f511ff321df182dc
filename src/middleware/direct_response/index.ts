/**
 * `direct_response`: a route (or one of its `backends`) that answers with a
 * fixed status and body itself; nothing goes upstream. The Gateway API
 * needs it for a rule whose backends are all invalid (500), and it serves
 * maintenance pages, `/robots.txt` and health answers at the edge.
 *
 * ```yaml
 * routes:
 *   - id: gone
 *     path: /old/*
 *     direct_response: { status: 410, body: "this API was retired", content_type: text/plain }
 * ```
 *
 * The body is encoded once per snapshot; each request writes the same bytes
 * (the route's `response` middleware still runs on the answer).
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import { HeaderList } from "../../core/headers.ts";
import { respond } from "../../core/respond.ts";
import type { DirectResponseConfig } from "../../config/route_actions.ts";

/** The terminal answering `o`. */
export function directResponse(o: DirectResponseConfig): (ctx: RequestContext) => Promise<void> {
  const body = new TextEncoder().encode(o.body ?? "");
  const type = o.content_type ?? (body.length > 0 ? "text/plain; charset=utf-8" : undefined);
  const status = o.status;
  return (ctx) => {
    // A fresh list per answer: response middleware may edit it.
    const h = type === undefined
      ? new HeaderList()
      : new HeaderList(["content-type"], ["content-type"], [type]);
    return respond(ctx, status, h, body);
  };
}
