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
  /** Old name → new name; every value kept, in order. */
  rename?: Record<string, string>;
}

/** The `headers` middleware's options. */
export interface HeadersOptions {
  request?: HeaderEditOptions;
  response?: HeaderEditOptions;
}

type Edit = (ctx: RequestContext, h: HeaderList) => void;

/** Compiles one side's edits into a single function (rename, remove, set, then add). */
export function compileHeaderEdits(o: HeaderEditOptions | undefined): Edit | null {
  if (o === undefined) return null;
  const rename = Object.entries(o.rename ?? {}).map(([a, b]) => [a.toLowerCase(), b.toLowerCase()] as const);
  const remove = (o.remove ?? []).map((n) => n.toLowerCase());
  const compile = (m: Record<string, string> | undefined) =>
    Object.entries(m ?? {}).map(([n, v]) =>
      [n.toLowerCase(), compileTemplate(v)] as [string, Template | string]
    );
  const set = compile(o.set);
  const add = compile(o.add);
  if (rename.length === 0 && remove.length === 0 && set.length === 0 && add.length === 0) return null;
  return (ctx, h) => {
    for (const [from, to] of rename) {
      for (let i = 0; i < h.size; i++) {
        if (h.keys[i] === from) {
          h.keys[i] = to;
          h.names[i] = to;
        }
      }
    }
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

/** The `security_headers` options (normalised). */
export interface SecurityHeadersOptions {
  hsts: { max_age: number; include_subdomains: boolean; preload: boolean };
  content_type_options: boolean;
  frame_options: boolean | string;
  referrer_policy: boolean | string;
  content_security_policy: boolean | string;
  override: boolean;
}

function preset(v: boolean | string, def: string): string | null {
  return v === false ? null : v === true ? def : v;
}

/** The security headers preset: fields the upstream did not set (or all, with `override`). */
export function securityHeaders(o: SecurityHeadersOptions): Middleware {
  const fields: [string, string][] = [];
  const add = (name: string, v: string | null) => v !== null && fields.push([name, v]);
  add("x-content-type-options", o.content_type_options ? "nosniff" : null);
  add("x-frame-options", preset(o.frame_options, "DENY"));
  add("referrer-policy", preset(o.referrer_policy, "strict-origin-when-cross-origin"));
  add(
    "content-security-policy",
    preset(o.content_security_policy, "default-src 'self'; frame-ancestors 'none'"),
  );
  const hsts = `max-age=${Math.floor(o.hsts.max_age / 1000)}${
    o.hsts.include_subdomains ? "; includeSubDomains" : ""
  }${o.hsts.preload ? "; preload" : ""}`;
  return {
    name: "security_headers",
    response: (ctx, head) => {
      const h = head.headers;
      for (const [k, v] of fields) if (o.override || !h.has(k)) h.set(k, v);
      // RFC 6797 7.2: HSTS only over a secure transport.
      if (ctx.scheme === "https" && (o.override || !h.has("strict-transport-security"))) {
        h.set("strict-transport-security", hsts);
      }
    },
  };
}
