/**
 * `redirect`: answers with a redirect built from the route's template (its
 * `{param}` captures and catch-all filled in) and never calls `next`.
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";
import { HeaderList } from "../../core/headers.ts";
import { respond } from "../../core/respond.ts";
import { compileRedirect } from "../../router/mod.ts";

/** The redirect middleware for a route's `redirect: {url, code}`. */
export function redirect(url: string, code: number): Middleware {
  const target = compileRedirect(url);
  return {
    name: "redirect",
    request: (ctx) => {
      const location = target(ctx.params, ctx.pathRest);
      const h = new HeaderList(["location", "content-type"], ["location", "content-type"], [
        location,
        "text/plain",
      ]);
      return respond(ctx, code, h, "");
    },
  };
}
