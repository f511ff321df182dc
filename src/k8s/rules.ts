/**
 * HTTPRoute and GRPCRoute rules → Loom route templates (everything but the
 * listener, host and the hostname part of the priority, which
 * translate.ts adds per attachment).
 *
 * - Matches: HTTPRoute path Exact / PathPrefix (by segment: `/a` is `/a/*`,
 *   which also takes `/a` and `/a/`) / RegularExpression (`path_regex`,
 *   anchored), headers, query parameters and method; GRPCRoute service and
 *   method onto the path `/service/method`, and headers. A literal path the
 *   router's pattern syntax cannot carry (`{`, `*`, a segment starting with
 *   `:`) becomes an escaped `path_regex`.
 * - Filters: RequestHeaderModifier / ResponseHeaderModifier (the `headers`
 *   middleware), RequestRedirect (`redirect` from parts), URLRewrite
 *   (`rewrite`, `host_rewrite`; ReplacePrefixMatch as two routes, the bare
 *   prefix and the prefix with its rest), RequestMirror (`mirror`), CORS
 *   (the `cors` middleware), ExtensionRef (`loom.dev` `Plugin` → a plugin,
 *   `Middleware` → a named list of `gateway_api.middleware`).
 * - backendRefs: one valid backend is `upstream`; several (or backend
 *   filters) a weighted `backends` split; an invalid reference keeps its
 *   weight and answers 500; none valid (or none at all) answers 500.
 * - timeouts.request → `timeout`, timeouts.backendRequest → `per_try_timeout`;
 *   retry (experimental) → the upstream's retry policy (an upstream per
 *   Service port and policy).
 *
 * Precedence (the spec's, among the rules of every route on a listener):
 * exact path > regular expression > longest prefix, then a method match,
 * then the most header matches, then the most query matches; computed into
 * the route's `priority`. Older routes, then namespace/name, then rule and
 * match order break ties (the routes' list order).
 *
 * @module
 */
import { type BackendRef, type RefProblem, type ResolvedService, resolveServiceRef } from "./refs.ts";
import type { Json, K8sObject, ResourceSet } from "./types.ts";

/** A middleware entry that stands for the named list of `gateway_api.middleware` (the merge expands it). */
export const MIDDLEWARE_REF = "$gateway_api_middleware";

/** The group of Loom's ExtensionRef filters. */
export const EXTENSION_GROUP = "loom.dev";

/** What rules need from the translation around them. */
export interface RuleContext {
  res: ResourceSet;
  /** The upstream (created once) for a resolved Service port and retry policy. */
  upstream(s: ResolvedService, retry: Record<string, unknown> | undefined): string;
  middlewareNames: ReadonlySet<string>;
  pluginNames: ReadonlySet<string>;
}

/** A Loom route without listener and host; `needsPort`: a redirect whose port is the listener's. */
export interface RouteTemplate {
  key: string;
  route: Record<string, unknown>;
  /** Path, method, header and query part of the priority. */
  score: number;
  needsPort: boolean;
}

/** The rules' routes, and what went wrong (ResolvedRefs / Accepted problems). */
export interface RulesResult {
  templates: RouteTemplate[];
  refProblems: RefProblem[];
  /** A problem that makes the whole route unaccepted (UnsupportedValue). */
  invalid?: string;
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Whether `path` can be a literal router pattern (no param, catch-all or brace syntax in it). */
function literalPath(path: string): boolean {
  if (!path.startsWith("/") || path.includes("//") || /[?#\s{}*]/.test(path)) return false;
  return path.slice(1).split("/").every((seg) => !seg.startsWith(":") && seg !== "." && seg !== "..");
}

/** A Gateway API duration ("1h2m3s", "500ms") → Loom's; "0s" (no timeout) → a day. */
function duration(v: unknown): string | undefined {
  if (typeof v !== "string" || !/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(v)) return undefined;
  return /^(0+(h|m|s|ms))+$/.test(v) ? "24h" : v;
}

const SCORE_PATH = 2 ** 11;
const PATH_EXACT = 3 * 4096, PATH_REGEX = 2 * 4096, PATH_PREFIX = 4096;

/** Header or query matches → Loom matchers (the first of equal names counts), or a problem. */
function matchers(
  list: { type?: string; name?: string; value?: string }[] | undefined,
  fold: boolean,
): Record<string, unknown> | string {
  const out: Record<string, unknown> = {};
  for (const m of list ?? []) {
    if (typeof m.name !== "string" || typeof m.value !== "string") return "a match has no name or value";
    const name = fold ? m.name.toLowerCase() : m.name;
    if (Object.hasOwn(out, name)) continue;
    const type = m.type ?? "Exact";
    if (type === "Exact") out[name] = { exact: m.value };
    else if (type === "RegularExpression") {
      const re = `^(?:${m.value})$`;
      if (!validRegex(re)) return `invalid regular expression "${m.value}"`;
      out[name] = { regex: re };
    } else return `match type "${type}" is not supported`;
  }
  return out;
}

function validRegex(re: string): boolean {
  try {
    new RegExp(re);
    return true;
  } catch {
    return false;
  }
}

/** A header value Loom would read as a template: refused (Gateway API values are literal). */
const templated = (v: unknown) => typeof v === "string" && v.includes("${");

/** One route's translation state: its kind, namespace, the context, the result and its problem sink. */
interface Scope {
  kind: string;
  ns: string;
  ctx: RuleContext;
  res: RulesResult;
  invalid: (why: string) => void;
}

interface FilterOut {
  middleware: unknown[];
  mirror: Record<string, unknown>[];
  plugins: string[];
  /** Set when a filter cannot be honoured: its requests get 500. */
  fail: boolean;
  redirect?: Json;
  rewrite?: Json;
}

/** Header modifier → `headers` edits of one side. */
function headerEdits(m: Json): Record<string, unknown> | string {
  const out: Record<string, unknown> = {};
  for (const op of ["set", "add"] as const) {
    const list = (m?.[op] ?? []) as { name: string; value: string }[];
    if (list.length === 0) continue;
    if (list.some((h) => templated(h.value))) return 'header values with "${" are not supported';
    out[op] = Object.fromEntries(list.map((h) => [h.name.toLowerCase(), h.value ?? ""]));
  }
  if ((m?.remove ?? []).length > 0) out.remove = (m.remove as string[]).map((n) => n.toLowerCase());
  return out;
}

/** Translates a filter list (of a rule, or of one backendRef when `backend`). */
function filters(list: Json[] | undefined, backend: boolean, sc: Scope): FilterOut {
  const { kind: routeKind, ns, ctx, invalid } = sc;
  const refProblems = sc.res.refProblems;
  const out: FilterOut = { middleware: [], mirror: [], plugins: [], fail: false };
  const headers: Record<string, unknown> = {};
  for (const f of list ?? []) {
    switch (f?.type) {
      case "RequestHeaderModifier":
      case "ResponseHeaderModifier": {
        const e = headerEdits(
          f.type === "RequestHeaderModifier" ? f.requestHeaderModifier : f.responseHeaderModifier,
        );
        if (typeof e === "string") invalid(e);
        else headers[f.type === "RequestHeaderModifier" ? "request" : "response"] = e;
        break;
      }
      case "RequestMirror": {
        const m = f.requestMirror ?? {};
        const r = resolveServiceRef(ctx.res, m.backendRef ?? {}, routeKind, ns);
        if ("reason" in r) {
          refProblems.push(r);
          break;
        }
        if (r.endpoints.length === 0) break;
        const frac = m.fraction;
        const percent = typeof m.percent === "number"
          ? m.percent
          : frac && typeof frac.numerator === "number"
          ? (100 * frac.numerator) / (frac.denominator ?? 100)
          : 100;
        const entry = { upstream: ctx.upstream(r, undefined), percent: Math.max(0, Math.min(100, percent)) };
        if (backend) out.middleware.push({ mirror: entry });
        else out.mirror.push(entry);
        break;
      }
      case "RequestRedirect":
        if (backend) invalid("RequestRedirect is not supported on a backendRef");
        else out.redirect = f.requestRedirect ?? {};
        break;
      case "URLRewrite":
        if (backend) invalid("URLRewrite is not supported on a backendRef");
        else out.rewrite = f.urlRewrite ?? {};
        break;
      case "CORS": {
        const c = f.cors ?? {};
        const cors: Record<string, unknown> = {};
        if (c.allowOrigins) cors.allow_origins = c.allowOrigins;
        if (c.allowMethods) cors.allow_methods = c.allowMethods;
        if (c.allowHeaders) cors.allow_headers = c.allowHeaders;
        if (c.exposeHeaders) cors.expose_headers = c.exposeHeaders;
        if (typeof c.maxAge === "number") cors.max_age = c.maxAge;
        if (typeof c.allowCredentials === "boolean") cors.allow_credentials = c.allowCredentials;
        out.middleware.push({ cors });
        break;
      }
      case "ExtensionRef": {
        const x = f.extensionRef ?? {};
        const name = String(x.name ?? "");
        if (x.group !== EXTENSION_GROUP || (x.kind !== "Plugin" && x.kind !== "Middleware")) {
          refProblems.push({
            reason: "InvalidKind",
            message: `ExtensionRef ${x.group}/${x.kind} is not Loom's`,
          });
          out.fail = true;
        } else if (x.kind === "Plugin" && ctx.pluginNames.has(name)) out.plugins.push(name);
        else if (x.kind === "Middleware" && ctx.middlewareNames.has(name)) {
          out.middleware.push({ [MIDDLEWARE_REF]: name });
        } else {
          refProblems.push({
            reason: "BackendNotFound",
            message: `ExtensionRef ${x.kind} "${name}" is not defined`,
          });
          out.fail = true;
        }
        break;
      }
      default:
        invalid(`filter type "${f?.type}" is not supported`);
    }
  }
  if (Object.keys(headers).length > 0) out.middleware.unshift({ headers });
  return out;
}

/** backendRefs → the route's action (`upstream`, `backends` or a 500). */
function backendAction(
  refs: BackendRef[] | undefined,
  retry: Record<string, unknown> | undefined,
  sc: Scope,
) {
  const { kind: routeKind, ns, ctx } = sc;
  const refProblems = sc.res.refProblems;
  const fail = { direct_response: { status: 500 } };
  if (!refs || refs.length === 0) return fail;
  let valid = 0;
  const backends = refs.map((ref, i) => {
    const weight = typeof ref.weight === "number" ? ref.weight : 1;
    const own = filters(ref.filters, true, sc);
    const r = resolveServiceRef(ctx.res, ref, routeKind, ns);
    const b: Record<string, unknown> = { name: `b${i}`, weight, middleware: own.middleware };
    if ("reason" in r) {
      refProblems.push(r);
      b.direct_response = { status: 500 };
    } else if (own.fail) b.direct_response = { status: 500 };
    else if (r.endpoints.length === 0) {
      valid++;
      b.direct_response = { status: 503, body: "no ready endpoints" };
    } else {
      valid++;
      b.upstream = ctx.upstream(r, retry);
    }
    return b;
  });
  if (valid === 0) return fail;
  const only = backends[0];
  if (backends.length === 1 && (only.weight as number) > 0 && (only.middleware as unknown[]).length === 0) {
    return only.upstream !== undefined
      ? { upstream: only.upstream }
      : { direct_response: only.direct_response };
  }
  return { backends };
}

/** A rule's path match → path fields and score; null with a reason when unsupported. */
function pathMatch(
  p: { type?: string; value?: string } | undefined,
): { path: string; path_regex?: string; score: number; prefix?: string; exact?: string } | string {
  const type = p?.type ?? "PathPrefix";
  const value = p?.value ?? "/";
  if (typeof value !== "string" || !value.startsWith("/")) return `path "${value}" must start with /`;
  if (type === "Exact") {
    const score = PATH_EXACT + Math.min(value.length, 4095);
    return literalPath(value)
      ? { path: value, score, exact: value }
      : { path: "/*", path_regex: escapeRegex(value), score };
  }
  if (type === "PathPrefix") {
    const base = value.length > 1 && value.endsWith("/") ? value.slice(0, -1) : value;
    const score = PATH_PREFIX + Math.min(base.length, 4095);
    if (base === "/") return { path: "/*", score, prefix: "" };
    return literalPath(base)
      ? { path: `${base}/*`, score, prefix: base }
      : { path: "/*", path_regex: `${escapeRegex(base)}(?:/.*)?`, score };
  }
  if (type === "RegularExpression") {
    if (!validRegex(value)) return `invalid regular expression "${value}"`;
    return { path: "/*", path_regex: value, score: PATH_REGEX + Math.min(value.length, 4095) };
  }
  return `path match type "${type}" is not supported`;
}

/** The retry policy of a rule (experimental `retry`), as an upstream `retry` block. */
function retryPolicy(r: Json): Record<string, unknown> | undefined {
  if (r === undefined || r === null) return undefined;
  const out: Record<string, unknown> = { max_retries: typeof r.attempts === "number" ? r.attempts : 1 };
  if (Array.isArray(r.codes) && r.codes.length > 0) out.retryable_codes = r.codes;
  const b = duration(r.backoff);
  if (b !== undefined) out.backoff_base = b;
  return out;
}

/** The route-level fields of a rule shared by HTTPRoute and GRPCRoute. */
interface RuleShared {
  fields: Record<string, unknown>;
  redirect?: Record<string, unknown>;
  needsPort: boolean;
  rewrite?: Json;
}

function ruleShared(rule: Json, sc: Scope): RuleShared {
  const invalid = sc.invalid;
  const f = filters(rule.filters, false, sc);
  const fields: Record<string, unknown> = { middleware: f.middleware, plugins: f.plugins };
  if (f.mirror.length > 0) fields.mirror = f.mirror;
  const t = rule.timeouts ?? {};
  const total = duration(t.request);
  const backendReq = duration(t.backendRequest);
  if (total !== undefined) fields.timeout = total;
  if (backendReq !== undefined) fields.per_try_timeout = backendReq;
  let needsPort = false;
  let redirect: Record<string, unknown> | undefined;
  if (f.redirect !== undefined) {
    const r = f.redirect;
    redirect = { status: r.statusCode ?? 302 };
    if (r.scheme) redirect.scheme = r.scheme;
    if (r.hostname) redirect.hostname = r.hostname;
    if (typeof r.port === "number") redirect.port = r.port;
    else if (!r.scheme) needsPort = true; // the spec: the listener's port
    const p = r.path;
    if (p?.type === "ReplaceFullPath") redirect.path = p.replaceFullPath;
    else if (p?.type === "ReplacePrefixMatch") redirect.prefix_path = p.replacePrefixMatch;
    if (typeof redirect.path === "string" && /[{}]/.test(redirect.path)) {
      invalid("redirect paths with { or } are not supported");
    }
  }
  if (f.fail) fields.direct_response = { status: 500 };
  return { fields, redirect, needsPort, rewrite: f.rewrite };
}

function scopeOf(kind: string, route: K8sObject, ctx: RuleContext): Scope {
  const res: RulesResult = { templates: [], refProblems: [] };
  return {
    kind,
    ns: route.metadata?.namespace ?? "default",
    ctx,
    res,
    invalid: (why) => res.invalid ??= why,
  };
}

/** The templates of an HTTPRoute's rules. */
export function httpRouteRules(route: K8sObject, ctx: RuleContext): RulesResult {
  const sc = scopeOf("HTTPRoute", route, ctx);
  const { res, invalid } = sc;
  (route.spec?.rules ?? []).forEach((rule: Json, ri: number) => {
    const shared = ruleShared(rule, sc);
    const action = shared.fields.direct_response !== undefined
      ? {}
      : shared.redirect !== undefined
      ? { redirect: shared.redirect }
      : backendAction(rule.backendRefs, retryPolicy(rule.retry), sc);
    const rw = shared.rewrite;
    if (rw?.hostname !== undefined) shared.fields.host_rewrite = rw.hostname;
    const matches = rule.matches?.length ? rule.matches : [{}];
    matches.forEach((m: Json, mi: number) => {
      const p = pathMatch(m.path);
      if (typeof p === "string") return invalid(p);
      const headers = matchers(m.headers, true);
      const query = matchers(m.queryParams, false);
      if (typeof headers === "string") return invalid(headers);
      if (typeof query === "string") return invalid(query);
      const base: Record<string, unknown> = { path: p.path, ...shared.fields, ...action };
      if (p.path_regex !== undefined) base.path_regex = p.path_regex;
      if (typeof m.method === "string") base.methods = [m.method];
      if (Object.keys(headers).length > 0) base.headers = headers;
      if (Object.keys(query).length > 0) base.query_params = query;
      const score = p.score * SCORE_PATH + (typeof m.method === "string" ? 1 << 10 : 0) +
        (Math.min(Object.keys(headers).length, 31) << 5) + Math.min(Object.keys(query).length, 31);
      const key = `${ri}.${mi}`;
      const rp = rw?.path;
      if (rp?.type === "ReplaceFullPath") {
        if (/[{}]/.test(rp.replaceFullPath ?? "")) {
          return invalid("rewrite paths with { or } are not supported");
        }
        base.rewrite = rp.replaceFullPath;
      } else if (rp?.type === "ReplacePrefixMatch") {
        const to = String(rp.replacePrefixMatch ?? "/");
        if (p.prefix === undefined) return invalid("ReplacePrefixMatch needs a PathPrefix match");
        if (/[{}]/.test(to)) return invalid("rewrite paths with { or } are not supported");
        const stem = to.endsWith("/") ? to.slice(0, -1) : to;
        // The rest after the prefix: "/p/x" → stem + "/x"; the bare prefix (its own route) → `to`.
        base.rewrite = `${stem}/{*}`;
        if (p.prefix !== "") {
          res.templates.push({
            key: key + "e",
            route: { ...base, path: p.prefix, rewrite: to === "" ? "/" : to },
            score,
            needsPort: shared.needsPort,
          });
        }
      }
      res.templates.push({ key, route: base, score, needsPort: shared.needsPort });
    });
  });
  return res;
}

/** The templates of a GRPCRoute's rules: method matches onto `/service/method`. */
export function grpcRouteRules(route: K8sObject, ctx: RuleContext): RulesResult {
  const sc = scopeOf("GRPCRoute", route, ctx);
  const { res, invalid } = sc;
  (route.spec?.rules ?? []).forEach((rule: Json, ri: number) => {
    const shared = ruleShared(rule, sc);
    if (shared.redirect !== undefined || shared.rewrite !== undefined) {
      return invalid("GRPCRoute takes no RequestRedirect or URLRewrite");
    }
    const action = shared.fields.direct_response !== undefined
      ? {}
      : backendAction(rule.backendRefs, retryPolicy(rule.retry), sc);
    const matches = rule.matches?.length ? rule.matches : [{}];
    matches.forEach((m: Json, mi: number) => {
      const service: string | undefined = m.method?.service;
      const method: string | undefined = m.method?.method;
      const type = m.method?.type ?? "Exact";
      const base: Record<string, unknown> = { path: "/*", ...shared.fields, ...action };
      if (type === "Exact") {
        const seg = (s: string) => literalPath("/" + s) && !s.includes("/");
        if (service !== undefined && method !== undefined && seg(service) && seg(method)) {
          base.path = `/${service}/${method}`;
        } else if (service !== undefined && method === undefined && seg(service)) {
          base.path = `/${service}/{method}`;
        } else if (service !== undefined || method !== undefined) {
          base.path_regex = `/${service !== undefined ? escapeRegex(service) : "[^/]+"}/${
            method !== undefined ? escapeRegex(method) : "[^/]+"
          }`;
        }
      } else if (type === "RegularExpression") {
        const re = `/${service ?? "[^/]+"}/${method ?? "[^/]+"}`;
        if (!validRegex(re)) return invalid(`invalid regular expression in method match "${re}"`);
        base.path_regex = re;
      } else return invalid(`method match type "${type}" is not supported`);
      const headers = matchers(m.headers, true);
      if (typeof headers === "string") return invalid(headers);
      if (Object.keys(headers).length > 0) base.headers = headers;
      const score = (Math.min(service?.length ?? 0, 127) * 128 + Math.min(method?.length ?? 0, 127)) *
          SCORE_PATH + (Math.min(Object.keys(headers).length, 31) << 5);
      res.templates.push({ key: `${ri}.${mi}`, route: base, score, needsPort: false });
    });
  });
  return res;
}
