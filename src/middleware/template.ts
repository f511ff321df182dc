/**
 * Value templates for middleware options: `"${client_ip} via ${route_id}"`,
 * compiled once at load into a function of the request. Variables:
 * `client_ip`, `route_id`, `request_id`, `upstream` (the chosen endpoint),
 * `method`, `path`, `host`, `scheme`, `header.NAME`, `query.NAME` and
 * `jwt.CLAIM` (claims a JWT middleware stored under {@link JWT_CLAIMS_VAR}).
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";

/** Key in `ctx.vars` where an authentication middleware leaves the verified JWT claims. */
export const JWT_CLAIMS_VAR = "loom.jwt.claims";

/** A compiled template. */
export type Template = (ctx: RequestContext) => string;

type Part = string | Template;

function queryParam(query: string, name: string): string {
  for (const kv of query.split("&")) {
    const eq = kv.indexOf("=");
    const k = eq === -1 ? kv : kv.slice(0, eq);
    if (k === name) {
      try {
        return decodeURIComponent((eq === -1 ? "" : kv.slice(eq + 1)).replaceAll("+", " "));
      } catch {
        return "";
      }
    }
  }
  return "";
}

function variable(name: string): Template | string {
  switch (name) {
    case "client_ip":
      return (c) => c.clientIp;
    case "route_id":
      return (c) => c.route?.id ?? "";
    case "request_id":
      return (c) => c.id;
    case "upstream":
      return (c) => c.upstreamAddr;
    case "method":
      return (c) => c.method;
    case "path":
      return (c) => c.path;
    case "host":
      return (c) => c.host;
    case "scheme":
      return (c) => c.scheme;
  }
  const dot = name.indexOf(".");
  const kind = dot === -1 ? "" : name.slice(0, dot);
  const arg = name.slice(dot + 1);
  if (kind === "header") {
    const key = arg.toLowerCase();
    return (c) => c.headers.getJoined(key) ?? "";
  }
  if (kind === "query") return (c) => queryParam(c.query, arg);
  if (kind === "jwt") {
    return (c) => {
      const claims = c.vars.get(JWT_CLAIMS_VAR) as Record<string, unknown> | undefined;
      const v = claims?.[arg];
      return v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
    };
  }
  throw new Error(`unknown variable "\${${name}}"`);
}

/**
 * Compiles `text`; throws on an unknown variable (config validation reports it
 * with {@link templateError} first). A template without variables returns its
 * text as a string, so callers can skip the per-request call.
 */
export function compileTemplate(text: string): Template | string {
  const parts: Part[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$\{([^}]+)\}/g)) {
    if (m.index! > last) parts.push(text.slice(last, m.index));
    parts.push(variable(m[1]));
    last = m.index! + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  if (parts.every((p) => typeof p === "string")) return parts.join("");
  if (parts.length === 1) return parts[0];
  return (ctx) => {
    let s = "";
    for (const p of parts) s += typeof p === "string" ? p : p(ctx);
    return s;
  };
}

/** Why `text` does not compile, or undefined when it does. */
export function templateError(text: string): string | undefined {
  try {
    compileTemplate(text);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
