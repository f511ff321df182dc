/**
 * `headers`: request and response header edits (set, add, remove), values
 * may use request variables (see ../template.ts). Request edits apply to the
 * head going upstream (`upstream_request` phase), response edits to the head
 * the client gets (`response` phase, Loom's own answers included).
 *
 * ```yaml
 * middleware:
 *   - headers:
 *       request: { set: { x-client-ip: "${client_ip}" }, remove: [x-debug] }
 *       response: { set: { x-frame-options: DENY }, add: { x-served-by: "${route_id}" } }
 * ```
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { HeaderList } from "../../core/headers.ts";
import type { Middleware } from "../../core/middleware.ts";
import { compileTemplate, type Template } from "../template.ts";

/** One side's edits as written in the config. */
export interface HeaderEditOptions {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

/** The `headers` middleware's options. */
export interface HeadersOptions {
  request?: HeaderEditOptions;
  response?: HeaderEditOptions;
}

type Edit = (ctx: RequestContext, h: HeaderList) => void;

/** Compiles one side's edits into a single function (remove, then set, then add). */
export function compileHeaderEdits(o: HeaderEditOptions | undefined): Edit | null {
  if (o === undefined) return null;
  const remove = (o.remove ?? []).map((n) => n.toLowerCase());
  const compile = (m: Record<string, string> | undefined) =>
    Object.entries(m ?? {}).map(([n, v]) =>
      [n.toLowerCase(), compileTemplate(v)] as [string, Template | string]
    );
  const set = compile(o.set);
  const add = compile(o.add);
  if (remove.length === 0 && set.length === 0 && add.length === 0) return null;
  return (ctx, h) => {
    for (const k of remove) h.delete(k);
    for (const [k, v] of set) h.set(k, typeof v === "string" ? v : v(ctx));
    for (const [k, v] of add) h.append(k, typeof v === "string" ? v : v(ctx));
  };
}

/** The middleware for `o`. */
export function headers(o: HeadersOptions): Middleware {
  const req = compileHeaderEdits(o.request);
  const res = compileHeaderEdits(o.response);
  return {
    name: "headers",
    upstreamRequest: req === null ? undefined : (ctx, head) => req(ctx, head.headers),
    response: res === null ? undefined : (ctx, head) => res(ctx, head.headers),
  };
}
