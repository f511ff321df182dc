/**
 * The gateway's own RFC 9110 intermediary rules for TRACE and OPTIONS, run
 * after routing and before a route's middleware (they are Loom's behaviour,
 * not an option of a chain):
 *
 * - TRACE is refused with `405 Method Not Allowed` and an `Allow` header
 *   unless the route sets `allow_trace: true`: an upstream's TRACE echo
 *   would hand the client's cookies and credentials to a script (XST).
 * - `Max-Forwards` (RFC 9110 7.6.2) on TRACE and OPTIONS: 0 means Loom is
 *   the last recipient and answers itself; another value is decremented on
 *   its way upstream (every upstream protocol: the field list is edited in
 *   place before the chain runs). A value that is not a number is left alone.
 *   - OPTIONS: `200` with `Allow` (the route's methods) and no body, as a
 *     server answers OPTIONS about itself. `OPTIONS *` gets Loom's methods.
 *   - TRACE (allowed): `200` with `Content-Type: message/http`, the request
 *     head as Loom received it, credential fields (`Authorization`, `Cookie`,
 *     `X-Api-Key`... the admin API's rule) redacted.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { RouteConfig } from "../config/types.ts";
import { HeaderList } from "../core/headers.ts";
import { respond, respondError } from "../core/respond.ts";
import { isSecretName, REDACTED } from "../core/secret_names.ts";
import { encodeHead } from "../http1/serialize.ts";

/** What Loom forwards when a route lists no methods (CONNECT is refused by every listener). */
const ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const allowCache = new WeakMap<RouteConfig, string>();

/** The `Allow` value of a route: its methods (all Loom forwards when none), TRACE only when allowed. */
export function allowOf(route: RouteConfig): string {
  let v = allowCache.get(route);
  if (v === undefined) {
    const list = (route.methods ?? ALL_METHODS).filter((m) => m !== "TRACE");
    if (route.allow_trace && (route.methods === undefined || route.methods.includes("TRACE"))) {
      list.push("TRACE");
    }
    v = list.join(", ");
    allowCache.set(route, v);
  }
  return v;
}

/** Beyond any real hop count: forwarded unchanged. */
const MANY = 1e15;

/** The client's Max-Forwards (1*DIGIT) as a number, MANY when longer than 15 digits; -1 when absent or invalid. */
export function maxForwards(ctx: RequestContext): number {
  const v = ctx.headers.get("max-forwards");
  if (v === undefined || !/^\d+$/.test(v)) return -1;
  return v.length > 15 ? MANY : Number(v);
}

/**
 * TRACE and OPTIONS on a matched route: Loom's answer (a promise) when the
 * request stops here, or null when the route's chain takes it (Max-Forwards
 * already decremented then).
 */
export function traceOrOptions(ctx: RequestContext, route: RouteConfig): Promise<void> | null {
  const trace = ctx.method === "TRACE";
  if (trace && !route.allow_trace) {
    return respondError(ctx, 405, "TRACE is not allowed", [["allow", allowOf(route)]]);
  }
  const hops = maxForwards(ctx);
  if (hops === 0) return trace ? traceEcho(ctx) : optionsAnswer(ctx, allowOf(route));
  if (hops > 0 && hops < MANY) ctx.headers.set("max-forwards", String(hops - 1));
  return null;
}

/** `OPTIONS *` (no route: the question is about Loom): answered when Max-Forwards is 0, else null. */
export function serverOptions(ctx: RequestContext): Promise<void> | null {
  if (ctx.method !== "OPTIONS" || ctx.target !== "*" || maxForwards(ctx) !== 0) return null;
  return optionsAnswer(ctx, ALL_METHODS.join(", "));
}

function optionsAnswer(ctx: RequestContext, allow: string): Promise<void> {
  const h = new HeaderList(["allow"], ["allow"], [allow]);
  if (ctx.id !== "") h.append("x-request-id", ctx.id);
  return respond(ctx, 200, h, "");
}

/** The HTTP-version of the echoed request line ("HTTP/2" is not one: "HTTP/2.0"). */
function versionOf(protocol: string): string {
  return protocol === "HTTP/2" || protocol === "HTTP/3" ? protocol + ".0" : protocol;
}

/** TRACE with Max-Forwards: 0: the request head as received, credentials redacted (RFC 9110 9.3.8). */
function traceEcho(ctx: RequestContext): Promise<void> {
  const { names, keys, values } = ctx.headers;
  let start = ctx.method + " " + ctx.target + " " + versionOf(ctx.protocol) + "\r\n";
  // HTTP/2 and HTTP/3 carry the authority as a pseudo-header: shown as the Host it stands for.
  if (!keys.includes("host") && ctx.authority !== "") start += "host: " + ctx.authority + "\r\n";
  const shown = new HeaderList(
    names.slice(),
    keys.slice(),
    values.map((v, i) => isSecretName(keys[i]) ? REDACTED : v),
  );
  const h = new HeaderList(["content-type"], ["content-type"], ["message/http"]);
  if (ctx.id !== "") h.append("x-request-id", ctx.id);
  return respond(ctx, 200, h, encodeHead(start, shown, ""));
}
