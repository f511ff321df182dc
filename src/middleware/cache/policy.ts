/**
 * The rules of RFC 9111 the cache middleware applies, as pure functions:
 * Cache-Control parsing, whether a response may be stored (section 3, as a
 * shared cache), its freshness lifetime (4.2.1, heuristics 4.2.2), its age
 * (4.2.3), the stale windows (RFC 5861) and conditional requests answered
 * from a stored response (RFC 9110 13.1.1, 13.1.3).
 *
 * @module
 */
import type { HeaderList } from "../../core/headers.ts";

/** The Cache-Control directives the cache acts on (request or response). Seconds; -1 = absent. */
export interface Directives {
  maxAge: number;
  sMaxAge: number;
  noStore: boolean;
  noCache: boolean;
  private: boolean;
  public: boolean;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  onlyIfCached: boolean;
  /** Request: Infinity for a bare `max-stale`. */
  maxStale: number;
  minFresh: number;
  staleWhileRevalidate: number;
  staleIfError: number;
}

/** Largest delta-seconds honoured (RFC 9111 1.2.2: 2^31). */
const MAX_DELTA = 2147483648;

function emptyDirectives(): Directives {
  return {
    maxAge: -1,
    sMaxAge: -1,
    noStore: false,
    noCache: false,
    private: false,
    public: false,
    mustRevalidate: false,
    proxyRevalidate: false,
    onlyIfCached: false,
    maxStale: -1,
    minFresh: -1,
    staleWhileRevalidate: -1,
    staleIfError: -1,
  };
}

/** delta-seconds; an invalid value is 0 (RFC 9111 4.2.1: treat the response as stale). */
function delta(v: string | undefined): number {
  if (v === undefined || !/^[0-9]+$/.test(v)) return 0;
  const n = Number(v);
  return n > MAX_DELTA ? MAX_DELTA : n;
}

/**
 * Parses a Cache-Control field value (all lines joined). Directive names are
 * case-insensitive; values may be quoted; the first of a duplicated directive
 * counts. Unknown directives are ignored.
 */
export function parseCacheControl(value: string | undefined): Directives {
  const d = emptyDirectives();
  if (value === undefined) return d;
  let i = 0;
  const n = value.length;
  while (i < n) {
    // name
    while (i < n && (value[i] === " " || value[i] === "\t" || value[i] === ",")) i++;
    const start = i;
    while (i < n && value[i] !== "=" && value[i] !== ",") i++;
    const name = value.slice(start, i).trim().toLowerCase();
    let arg: string | undefined;
    if (i < n && value[i] === "=") {
      i++;
      while (i < n && (value[i] === " " || value[i] === "\t")) i++;
      if (value[i] === '"') {
        let s = "";
        i++;
        while (i < n && value[i] !== '"') {
          if (value[i] === "\\" && i + 1 < n) i++;
          s += value[i++];
        }
        i++;
        arg = s;
        while (i < n && value[i] !== ",") i++;
      } else {
        const vs = i;
        while (i < n && value[i] !== ",") i++;
        arg = value.slice(vs, i).trim();
      }
    }
    switch (name) {
      case "max-age":
        if (d.maxAge < 0) d.maxAge = delta(arg);
        break;
      case "s-maxage":
        if (d.sMaxAge < 0) d.sMaxAge = delta(arg);
        break;
      case "no-store":
        d.noStore = true;
        break;
      case "no-cache":
        // The qualified form (no-cache="field") is taken as unqualified: revalidate every time.
        d.noCache = true;
        break;
      case "private":
        d.private = true;
        break;
      case "public":
        d.public = true;
        break;
      case "must-revalidate":
        d.mustRevalidate = true;
        break;
      case "proxy-revalidate":
        d.proxyRevalidate = true;
        break;
      case "only-if-cached":
        d.onlyIfCached = true;
        break;
      case "max-stale":
        if (d.maxStale < 0) d.maxStale = arg === undefined ? Infinity : delta(arg);
        break;
      case "min-fresh":
        if (d.minFresh < 0) d.minFresh = delta(arg);
        break;
      case "stale-while-revalidate":
        if (d.staleWhileRevalidate < 0) d.staleWhileRevalidate = delta(arg);
        break;
      case "stale-if-error":
        if (d.staleIfError < 0) d.staleIfError = delta(arg);
        break;
    }
  }
  return d;
}

/** An HTTP date in ms since the epoch, NaN when absent or invalid. */
export function httpDate(v: string | undefined): number {
  return v === undefined ? NaN : Date.parse(v);
}

/** Statuses a cache may give a heuristic (or configured default) freshness (RFC 9110 15.1). */
const HEURISTIC = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);
/** Statuses stored with explicit freshness (the heuristic ones, temporary redirects, 451). */
const EXPLICIT = new Set([...HEURISTIC, 302, 307, 451]);

/** Settings of the cache that shape the rules below. */
export interface PolicySettings {
  /** ms of freshness for responses without explicit freshness (0: none). */
  defaultTtl: number;
  /** RFC 9111 4.2.2: 10% of Date − Last-Modified. */
  heuristic: boolean;
  /** ms: configured windows, used when the response sets none. */
  staleWhileRevalidate: number;
  staleIfError: number;
  /** ms an expired response with a validator is kept for revalidation. */
  keepStale: number;
}

/** What the cache needs to know about a response to store and reuse it. */
export interface Freshness {
  /** Seconds. */
  lifetime: number;
  /** Seconds past the lifetime the response may be served while one request refreshes it. */
  swr: number;
  /** Seconds past the lifetime the response may be served when the upstream fails. */
  sie: number;
  /** Never reused without a successful revalidation (no-cache). */
  noCache: boolean;
  /** Never served stale (must-revalidate, proxy-revalidate, s-maxage, no-cache), but by its own stale-* directives. */
  noStale: boolean;
  /** May answer a request with Authorization (public, s-maxage, must-revalidate: RFC 9111 3.5). */
  authOk: boolean;
  /** Age of the response when it arrived (RFC 9111 4.2.3 corrected_initial_age), seconds. */
  initialAge: number;
}

/**
 * Why a response to a GET may not be stored ("" when it may), as a shared
 * cache: status, no-store, private, Vary: *, Set-Cookie, Authorization
 * without public/s-maxage/must-revalidate, trailers, nothing to reuse it by
 * (no freshness and no validator).
 */
export function unstorable(
  status: number,
  h: HeaderList,
  d: Directives,
  f: Freshness,
  hasAuthorization: boolean,
  settings: PolicySettings,
): string {
  if (d.noStore) return "no-store";
  if (d.private) return "private";
  const explicit = d.sMaxAge >= 0 || d.maxAge >= 0 || h.has("expires");
  if (!(explicit ? EXPLICIT : HEURISTIC).has(status)) return "status";
  if (h.has("set-cookie")) return "set-cookie";
  const vary = h.getJoined("vary");
  if (vary !== undefined && vary.includes("*")) return "vary";
  if (hasAuthorization && !f.authOk) return "authorization";
  if (
    f.lifetime <= 0 && !(settings.keepStale > 0 && hasValidator(h)) && d.staleWhileRevalidate <= 0 &&
    d.staleIfError <= 0
  ) {
    return "not-fresh";
  }
  return "";
}

/** Whether `h` carries ETag or Last-Modified. */
export function hasValidator(h: HeaderList): boolean {
  return h.has("etag") || h.has("last-modified");
}

/**
 * Freshness of a response received at `responseTime` (ms) for a request sent
 * at `requestTime` (ms): lifetime from s-maxage (a shared cache: it wins),
 * max-age, Expires − Date, then the heuristic or the configured default; the
 * stale windows from stale-while-revalidate / stale-if-error or the
 * configured ones, none after must-revalidate, proxy-revalidate or no-cache
 * (and the configured ones none after s-maxage either, which implies
 * proxy-revalidate; the response's own directives still count).
 */
export function freshness(
  status: number,
  h: HeaderList,
  d: Directives,
  requestTime: number,
  responseTime: number,
  s: PolicySettings,
): Freshness {
  let date = httpDate(h.get("date"));
  if (Number.isNaN(date)) date = responseTime;
  let lifetime: number;
  if (d.sMaxAge >= 0) lifetime = d.sMaxAge;
  else if (d.maxAge >= 0) lifetime = d.maxAge;
  else if (h.has("expires")) {
    const exp = httpDate(h.get("expires"));
    lifetime = Number.isNaN(exp) ? 0 : Math.max(0, (exp - date) / 1000);
  } else if (HEURISTIC.has(status)) {
    lifetime = 0;
    const lm = s.heuristic ? httpDate(h.get("last-modified")) : NaN;
    if (!Number.isNaN(lm) && lm < date) lifetime = (date - lm) / 10_000;
    else if (s.defaultTtl > 0) lifetime = s.defaultTtl / 1000;
  } else lifetime = 0;
  // RFC 9111 4.2.3.
  const ageValue = delta(h.get("age"));
  const apparentAge = Math.max(0, (responseTime - date) / 1000);
  const responseDelay = Math.max(0, (responseTime - requestTime) / 1000);
  const initialAge = Math.max(apparentAge, ageValue + responseDelay);
  const noStale = d.mustRevalidate || d.proxyRevalidate || d.noCache;
  const configured = !noStale && d.sMaxAge < 0;
  const window = (own: number, conf: number) => noStale ? 0 : own >= 0 ? own : configured ? conf / 1000 : 0;
  return {
    lifetime,
    swr: window(d.staleWhileRevalidate, s.staleWhileRevalidate),
    sie: window(d.staleIfError, s.staleIfError),
    noCache: d.noCache,
    noStale: noStale || d.sMaxAge >= 0,
    authOk: d.public || d.sMaxAge >= 0 || d.mustRevalidate,
    initialAge,
  };
}

/** How long (ms from `responseTime`) a stored response is worth keeping. */
export function keepFor(f: Freshness, validator: boolean, s: PolicySettings): number {
  const stale = Math.max(f.swr, f.sie) * 1000;
  const keep = validator ? Math.max(stale, s.keepStale) : stale;
  return Math.max(0, (f.lifetime - f.initialAge) * 1000) + keep;
}

/** Strong or weak entity-tag comparison of RFC 9110 8.8.3.2 (weak: "W/" ignored). */
function weakEqual(a: string, b: string): boolean {
  const x = a.startsWith("W/") ? a.slice(2) : a;
  const y = b.startsWith("W/") ? b.slice(2) : b;
  return x === y;
}

/**
 * Whether a client's conditional GET/HEAD is answered 304 by a response with
 * `etag` / `lastModified` (ms, NaN none; Date when there is no Last-Modified):
 * If-None-Match (weak comparison, `*`), else If-Modified-Since.
 */
export function notModified(
  ifNoneMatch: string | undefined,
  ifModifiedSince: string | undefined,
  etag: string | undefined,
  lastModified: number,
): boolean {
  if (ifNoneMatch !== undefined) {
    if (etag === undefined) return ifNoneMatch.trim() === "*";
    for (const part of ifNoneMatch.split(",")) {
      const t = part.trim();
      if (t === "*" || weakEqual(t, etag)) return true;
    }
    return false;
  }
  if (ifModifiedSince !== undefined && !Number.isNaN(lastModified)) {
    const since = httpDate(ifModifiedSince);
    return !Number.isNaN(since) && lastModified <= since;
  }
  return false;
}

/**
 * Fields a 304 from the upstream does not replace in a stored response
 * (RFC 9111 3.2: the framing and content fields stay the stored body's).
 */
const KEEP_ON_UPDATE = new Set(["content-length", "content-encoding", "transfer-encoding", "content-range"]);

/**
 * The stored fields refreshed by a 304's (RFC 9111 4.3.4): every field the
 * 304 carries replaces the stored ones of that name, but the framing and
 * content fields.
 */
export function refreshHeaders(stored: HeaderList, update: HeaderList): HeaderList {
  const out = stored.clone();
  const replaced = new Set<string>();
  for (let i = 0; i < update.size; i++) {
    const k = update.keys[i];
    if (KEEP_ON_UPDATE.has(k) || k === "age" || k === "cache-status") continue;
    if (!replaced.has(k)) {
      out.delete(k);
      replaced.add(k);
    }
    out.append(update.names[i], update.values[i]);
  }
  return out;
}
