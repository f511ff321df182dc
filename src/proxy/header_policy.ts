/**
 * Loom's upstream header policy (RFC 9110 7.6), one for every pair of client
 * protocol (HTTP/1.0-1.1, HTTP/2, HTTP/3) and upstream protocol (HTTP/1.1,
 * h2, h2c, gRPC), and its two serialisers.
 *
 * A request's upstream head is computed once per upstream request into an
 * {@linkcode UpstreamRequestHead} (method, target, authority, end-to-end
 * fields), handed to the route's `upstream_request` hooks, then written as
 * HTTP/1.1 text ({@linkcode http1RequestHead}) or as HTTP/2 (and HTTP/3)
 * fields ({@linkcode h2RequestFields}). The rules:
 *
 * - Hop-by-hop fields never cross: Connection, Keep-Alive, Proxy-Connection,
 *   TE, Transfer-Encoding, Upgrade, HTTP2-Settings and every field the
 *   Connection header lists; Host and Content-Length too (the serialiser
 *   writes Host / :authority and the framing of the body it sends), and
 *   their look-alikes `Content_Length` and `Transfer_Encoding` (any case).
 * - `TE: trailers` is sent when the client asked for trailers, and always to
 *   gRPC upstreams; an upgrade (WebSocket, HTTP/1.1 only) is re-announced.
 * - `Via` gets "<client version> loom" appended ("1.1", "2", "3").
 * - `X-Forwarded-For` and `Forwarded` get the peer's address appended to
 *   the client's values when the client is a trusted proxy (`trusted_proxies`),
 *   else the client's values are replaced. `X-Forwarded-Proto` and
 *   `X-Forwarded-Host` are always Loom's (a client's are never kept beside).
 * - `X-Request-ID` is Loom's id (the client's when Loom accepted it, else a
 *   fresh one): a client id Loom rejected is never forwarded.
 * - Host / :authority: `host_rewrite`, else the client's with
 *   `preserve_host`, else the endpoint's address.
 *
 * Responses share one rule too ({@linkcode filterResponseHeaders}, and its
 * byte-copying twin {@linkcode copyResponseHead} for HTTP/1.1 clients):
 * hop-by-hop and Connection-listed fields dropped, "<upstream version> loom"
 * appended to Via (the version of the message Loom received, RFC 9110 7.6.3).
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { HeaderList } from "../core/headers.ts";
import { runUpstreamRequestHooks, type UpstreamRequestHead } from "../core/middleware.ts";
import { tokenList } from "../http1/parse.ts";
import type { CidrSet } from "../net/cidr.ts";

export type { UpstreamRequestHead };

/**
 * Fields that never cross the proxy as received: connection, keep-alive,
 * proxy-connection, te, transfer-encoding, upgrade, http2-settings, plus
 * content-length and host, which the proxy re-emits itself. Lower-case names;
 * a switch on the length, then one compare, without hashing.
 */
export function isHopByHop(k: string): boolean {
  switch (k.length) {
    case 2:
      return k === "te";
    case 4:
      return k === "host";
    case 7:
      return k === "upgrade";
    case 10:
      return k === "connection" || k === "keep-alive";
    case 14:
      return k === "content-length" || k === "http2-settings";
    case 16:
      return k === "proxy-connection";
    case 17:
      return k === "transfer-encoding";
    default:
      return false;
  }
}

/**
 * `Content_Length` and `Transfer_Encoding` in any case (`k` is lower-case):
 * an upstream that folds "_" into "-" (CGI-style servers, some frameworks)
 * would read them as framing, so they never cross (nginx drops them too).
 */
export function isFramingLookAlike(k: string): boolean {
  switch (k.length) {
    case 14:
      return k === "content_length";
    case 17:
      return k === "transfer_encoding";
    default:
      return false;
  }
}

/** Whether `k` is one of the forwarding fields Loom sets itself. */
function isForwarding(k: string): boolean {
  switch (k.length) {
    case 3:
      return k === "via";
    case 9:
      return k === "forwarded";
    case 15:
      return k === "x-forwarded-for";
    case 16:
      return k === "x-forwarded-host";
    case 17:
      return k === "x-forwarded-proto";
    default:
      return false;
  }
}

/** The Via received-protocol of a request context's protocol ("HTTP/2" → "2"). */
export function viaVersion(protocol: string): string {
  return protocol === "HTTP/1.1"
    ? "1.1"
    : protocol === "HTTP/1.0"
    ? "1.0"
    : protocol === "HTTP/2"
    ? "2"
    : "3";
}

const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}

// Two one-entry caches (client address, authority): clients repeat both.
let lastIp = "", lastIpOut = "", lastHost = "", lastHostOut = "";

/** `for=` value of Forwarded: IPv6 bracketed and quoted (RFC 7239). */
export function forwardedFor(ip: string): string {
  if (ip === lastIp) return lastIpOut;
  lastIp = ip;
  return lastIpOut = quoteForwarded(ip.includes(":") ? "[" + ip + "]" : ip);
}

/** `host=` value of Forwarded: quoted when not a plain token. */
export function forwardedHost(authority: string): string {
  if (authority === lastHost) return lastHostOut;
  lastHost = authority;
  return lastHostOut = quoteForwarded(authority);
}

/** Quotes a Forwarded parameter value unless it is a plain token. */
export function quoteForwarded(v: string): string {
  let plain = v.length > 0;
  for (let i = 0; i < v.length && plain; i++) {
    const c = v.charCodeAt(i);
    plain = c < 128 && TCHAR[c] === 1;
  }
  if (plain) return v;
  return '"' + v.replace(/(["\\])/g, "\\$1") + '"';
}

/** What the policy needs of a route's forwarding options. */
export interface HostOptions {
  /** Keep the client's Host / :authority. */
  preserveHost: boolean;
  /** Send this Host / :authority (wins over preserveHost). */
  hostRewrite: string | undefined;
}

/**
 * Host / :authority sent upstream: `host_rewrite`, else the client's with
 * `preserve_host` (when it sent one), else the endpoint's address, without
 * the scheme's default port and with an IPv6 host in brackets.
 */
export function upstreamAuthority(
  ctx: RequestContext,
  opt: HostOptions,
  hostname: string,
  port: number,
  secure: boolean,
): string {
  if (opt.hostRewrite !== undefined) return opt.hostRewrite;
  if (opt.preserveHost && ctx.authority !== "") return ctx.authority;
  const host = hostname.includes(":") ? "[" + hostname + "]" : hostname;
  return port === (secure ? 443 : 80) ? host : host + ":" + port;
}

/**
 * The policy's working state for one request. One module-level instance:
 * a head is computed synchronously, start to end, so requests never share it.
 */
const st = {
  /** Tokens of the client's Connection fields (lower-case), or null. */
  nominated: null as string[] | null,
  /** The client is a trusted proxy: its X-Forwarded-For and Forwarded are kept and appended to. */
  chain: false,
  /** Loom's request id ("" when no gateway assigned one: the client's then passes). */
  rid: "",
  grpc: 0,
  /** The client's values of the fields Loom appends to (undefined: none). */
  xff: undefined as string | undefined,
  fwd: undefined as string | undefined,
  via: undefined as string | undefined,
  /** Send `TE: trailers`. */
  te: false,
};

/** Pass one over the client's fields (Connection tokens, TE) and the per-request facts. */
function begin(ctx: RequestContext, trusted: CidrSet | null): void {
  const { keys, values } = ctx.headers;
  const grpc = ctx.grpc;
  let nominated: string[] | null = null;
  let te = grpc !== 0; // gRPC requires TE: trailers
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (k === "connection") {
      nominated = nominated === null ? tokenList(values[i]) : nominated.concat(tokenList(values[i]));
    } else if (k === "te" && !te) te = tokenList(values[i]).includes("trailers");
  }
  st.nominated = nominated;
  st.te = te;
  st.grpc = grpc;
  st.rid = ctx.id;
  st.chain = trusted !== null && trusted.has(ctx.peerIp);
  st.xff = st.fwd = st.via = undefined;
}

/**
 * The value to send for the client's field `k` (lower-case) with value `v`,
 * or null when it does not cross. The values of the fields Loom appends to
 * are collected into `st`.
 */
function pass(k: string, v: string): string | null {
  if (isHopByHop(k) || k.charCodeAt(0) === 58 /* : pseudo */ || isFramingLookAlike(k)) return null;
  if (st.nominated !== null && st.nominated.includes(k)) return null;
  if (isForwarding(k)) {
    if (k === "via") st.via = st.via === undefined ? v : st.via + ", " + v;
    else if (st.chain) {
      if (k === "x-forwarded-for") st.xff = st.xff === undefined ? v : st.xff + ", " + v;
      else if (k === "forwarded") st.fwd = st.fwd === undefined ? v : st.fwd + ", " + v;
    }
    return null; // the client's values are replaced (X-Forwarded-Proto/-Host always)
  }
  // Loom's id is sent instead (a client id it rejected, or a second one, never is).
  if (k === "x-request-id" && st.rid !== "") return null;
  const grpc = st.grpc;
  if (grpc !== 0) {
    if (k === "grpc-timeout") return null; // the time left is sent instead (h2RequestFields)
    if (grpc >= 2) {
      // gRPC-Web → gRPC: same framing of messages, trailers move back into HTTP/2 trailers.
      if (k === "x-grpc-web") return null;
      if (k === "content-type") return "application/grpc" + v.replace(/^application\/grpc-web(-text)?/, "");
    }
  }
  return v;
}

/** Loom's X-Forwarded-For: the client's address, after a trusted proxy's list. */
function xffValue(ctx: RequestContext): string {
  return st.xff === undefined ? ctx.peerIp : st.xff + ", " + ctx.peerIp;
}

// The last Forwarded element built, by its parts: clients repeat them (one string less per request).
let lastFwdIp = "", lastFwdScheme = "", lastFwdAuthority = "", lastFwd = "";

/** Loom's Forwarded: `for`, `proto` and `host` of this hop, after a trusted proxy's elements. */
function forwardedValue(ctx: RequestContext): string {
  const ip = ctx.peerIp, scheme = ctx.scheme, authority = ctx.authority;
  if (ip !== lastFwdIp || scheme !== lastFwdScheme || authority !== lastFwdAuthority) {
    let f = "for=" + forwardedFor(ip) + ";proto=" + scheme;
    if (authority !== "") f += ";host=" + forwardedHost(authority);
    lastFwdIp = ip;
    lastFwdScheme = scheme;
    lastFwdAuthority = authority;
    lastFwd = f;
  }
  return st.fwd === undefined ? lastFwd : st.fwd + ", " + lastFwd;
}

/** Loom's Via: the client's list, then "<client version> loom" (a constant for HTTP/1.1 clients). */
function viaValue(ctx: RequestContext): string {
  const v = ctx.protocol === "HTTP/1.1" ? "1.1 loom" : viaVersion(ctx.protocol) + " loom";
  return st.via === undefined ? v : st.via + ", " + v;
}

function add(h: HeaderList, key: string, value: string): void {
  h.names.push(key);
  h.keys.push(key);
  h.values.push(value);
}

/**
 * Computes the head of the upstream request for `ctx` (see the module's
 * rules), for hooks and a serialiser. `trusted`: the addresses whose
 * X-Forwarded-For and Forwarded are appended to, or null (none).
 */
export function upstreamRequestHead(
  ctx: RequestContext,
  target: string,
  authority: string,
  trusted: CidrSet | null,
): UpstreamRequestHead {
  begin(ctx, trusted);
  const h = new HeaderList();
  const { names, keys, values } = ctx.headers;
  for (let i = 0; i < keys.length; i++) {
    const v = pass(keys[i], values[i]);
    if (v === null) continue;
    h.names.push(names[i]);
    h.keys.push(keys[i]);
    h.values.push(v);
  }
  // Loom's fields: the same, in the same order, as the fast path of http1UpstreamHead writes.
  add(h, "x-forwarded-for", xffValue(ctx));
  add(h, "x-forwarded-proto", ctx.scheme);
  if (ctx.authority !== "") add(h, "x-forwarded-host", ctx.authority);
  add(h, "forwarded", forwardedValue(ctx));
  add(h, "via", viaValue(ctx));
  if (st.rid !== "") add(h, "x-request-id", st.rid);
  if (st.te) add(h, "te", "trailers");
  return { method: ctx.method, target, authority, headers: h };
}

/**
 * The HTTP/1.1 request head for `ctx`: policy, hooks, text. Without
 * `upstream_request` hooks nothing can see the head between policy and
 * text, so the same policy is written straight as text (the HTTP/1.1 fast
 * path: no field list built, Loom's lines with literal names, which V8
 * joins and encodes faster); it gives the bytes that
 * {@linkcode http1RequestHead} of {@linkcode upstreamRequestHead} gives.
 */
export function http1UpstreamHead(
  ctx: RequestContext,
  target: string,
  authority: string,
  trusted: CidrSet | null,
): string {
  if (ctx.hooks !== null && ctx.hooks.upstreamRequest !== null) {
    const head = upstreamRequestHead(ctx, target, authority, trusted);
    applyUpstreamHooks(ctx, head);
    return http1RequestHead(ctx, head);
  }
  begin(ctx, trusted);
  let s = ctx.method + " " + target + " HTTP/1.1\r\nhost: " + authority + "\r\n";
  const { names, keys, values } = ctx.headers;
  for (let i = 0; i < keys.length; i++) {
    const v = pass(keys[i], values[i]);
    if (v !== null) s += names[i] + ": " + v + "\r\n";
  }
  s += "x-forwarded-for: " + xffValue(ctx) + "\r\n";
  s += "x-forwarded-proto: " + ctx.scheme + "\r\n";
  if (ctx.authority !== "") s += "x-forwarded-host: " + ctx.authority + "\r\n";
  s += "forwarded: " + forwardedValue(ctx) + "\r\n";
  s += "via: " + viaValue(ctx) + "\r\n";
  if (st.rid !== "") s += "x-request-id: " + st.rid + "\r\n";
  if (st.te) s += "te: trailers\r\n";
  return s + http1Tail(ctx, ctx.method);
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value without CR, LF or NUL (which would split or end a head). */
const SAFE_VALUE = /^[^\0\r\n]*$/;
/** A request target or authority: visible characters only. */
const SAFE_PART = /^[\x21-\x7e\x80-\xff]+$/;

/**
 * Runs the route's `upstream_request` hooks on `head` (one test when there
 * are none), then checks what they left: a name that is not a token, or a
 * value that could split the head, throws (the gateway answers 500).
 */
export function applyUpstreamHooks(ctx: RequestContext, head: UpstreamRequestHead): void {
  if (ctx.hooks === null || ctx.hooks.upstreamRequest === null) return;
  runUpstreamRequestHooks(ctx, head);
  const bad = (what: string) => {
    throw new TypeError("an upstream_request hook left an invalid " + what);
  };
  if (!TOKEN.test(head.method)) bad("method");
  if (!SAFE_PART.test(head.target)) bad("target");
  if (!SAFE_PART.test(head.authority)) bad("authority");
  const { names, keys, values } = head.headers;
  for (let i = 0; i < keys.length; i++) {
    if (!TOKEN.test(names[i]) || keys[i] !== names[i].toLowerCase()) bad("field name: " + names[i]);
    if (!SAFE_VALUE.test(values[i])) bad("value of " + names[i]);
  }
}

/** Whether a serialiser writes head field `k` (framing and connection fields are its own; TE only as trailers). */
function sendable(k: string, v: string): boolean {
  return !isHopByHop(k) || (k === "te" && v === "trailers");
}

/** Whether the method's request carries a body even when empty (Content-Length: 0 is sent). */
function bodyMethod(m: string): boolean {
  return m === "POST" || m === "PUT" || m === "PATCH";
}

/**
 * The head as HTTP/1.1 text: request line, Host, the fields (names as the
 * client wrote them), the upgrade when the client asked for one, and the
 * framing of the body Loom sends (Content-Length or chunked).
 */
export function http1RequestHead(ctx: RequestContext, head: UpstreamRequestHead): string {
  let s = head.method + " " + head.target + " HTTP/1.1\r\nhost: " + head.authority + "\r\n";
  const { names, keys, values } = head.headers;
  for (let i = 0; i < keys.length; i++) {
    if (sendable(keys[i], values[i])) s += names[i] + ": " + values[i] + "\r\n";
  }
  return s + http1Tail(ctx, head.method);
}

/** The end of an HTTP/1.1 head: the upgrade, the body's framing, the empty line. */
function http1Tail(ctx: RequestContext, method: string): string {
  const n = ctx.body.length;
  const end = n === 0
    ? (bodyMethod(method) ? "content-length: 0\r\n\r\n" : "\r\n")
    : n > 0
    ? "content-length: " + n + "\r\n\r\n"
    : "transfer-encoding: chunked\r\n\r\n";
  return ctx.upgrade === undefined ? end : "connection: upgrade\r\nupgrade: " + ctx.upgrade + "\r\n" + end;
}

/**
 * The head as HTTP/2 (or HTTP/3) fields, [name, value, ...]: pseudo-headers,
 * then the fields (lower-case names), Content-Length when the body's length is
 * known and kept (not for gRPC-Web, whose body changes), and for gRPC the
 * time left as `grpc-timeout` (`grpcTimeout`, else null).
 */
export function h2RequestFields(
  ctx: RequestContext,
  head: UpstreamRequestHead,
  secure: boolean,
  grpcTimeout: string | null,
): string[] {
  const f = [
    ":method",
    head.method,
    ":scheme",
    secure ? "https" : "http",
    ":authority",
    head.authority,
    ":path",
    head.target,
  ];
  const { keys, values } = head.headers;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i], v = values[i];
    if (sendable(k, v) && (grpcTimeout === null || k !== "grpc-timeout")) f.push(k, v);
  }
  const n = ctx.body.length;
  if (ctx.grpc < 2 && (n > 0 || (n === 0 && bodyMethod(head.method)))) f.push("content-length", String(n));
  if (grpcTimeout !== null) f.push("grpc-timeout", grpcTimeout);
  return f;
}

/** The tokens of a field list's Connection fields (lower-case), or null when it has none. */
export function connectionTokens(h: HeaderList): string[] | null {
  let out: string[] | null = null;
  const { keys, values } = h;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] === "connection") {
      out = out === null ? tokenList(values[i]) : out.concat(tokenList(values[i]));
    }
  }
  return out;
}

/**
 * Applies the response rule to an upstream response head in place: drops
 * hop-by-hop fields and those `connection` (the parsed Connection tokens)
 * lists, joins the upstream's Via values and appends "<version> loom", where
 * `version` is that of the response Loom received ("1.1", "2"). `keepUpgrade`
 * (a 101 answer) keeps Connection and Upgrade.
 */
export function filterResponseHeaders(
  h: HeaderList,
  connection: string[] | null,
  version: string,
  keepUpgrade: boolean,
): void {
  const { names, keys, values } = h;
  let w = 0;
  let via: string | undefined;
  for (let r = 0; r < keys.length; r++) {
    const k = keys[r];
    if (k === "via") {
      via = via === undefined ? values[r] : via + ", " + values[r];
      continue;
    }
    if (
      (isHopByHop(k) && k !== "host" && !(keepUpgrade && (k === "upgrade" || k === "connection"))) ||
      (connection !== null && !keepUpgrade && connection.includes(k))
    ) continue;
    names[w] = names[r];
    keys[w] = k;
    values[w] = values[r];
    w++;
  }
  names.length = keys.length = values.length = w;
  const v = version + " loom";
  h.append("via", via === undefined ? v : via + ", " + v);
}

/** What {@linkcode copyResponseHead} reads of a parsed response head (http1/parse.ts's ParsedResponse). */
export interface RawResponseHead {
  /** Absolute offsets in the buffer: head start, status line end, then [lineStart, lineEnd) per field. */
  readonly lines: readonly number[];
  /** Per field: 1 hop-by-hop (by name, Host included), 2 Via, 0 other. */
  readonly hop: readonly number[];
  /** Lower-cased tokens of the Connection fields, or null. */
  readonly connection: string[] | null;
  /** Field `i`'s lower-case name. */
  key(i: number): string;
}

/**
 * HTTP/1.1 fast path of {@linkcode filterResponseHeaders}: copies the
 * upstream's status line and kept field lines as bytes from `src` (the
 * upstream read buffer) into `dst`, then `via` (the whole "via: ... loom"
 * line). Returns the byte count, or -1 when `dst` is too small or the
 * upstream sent a Via to join (the caller then takes the list path).
 */
export function copyResponseHead(
  src: Uint8Array,
  res: RawResponseHead,
  dst: Uint8Array,
  via: Uint8Array,
): number {
  // Kept lines are copied in contiguous runs: usually one or two copies per head.
  const { lines, hop, connection } = res;
  // Connection naming other fields (not just keep-alive or close): their names are compared.
  const named = connection !== null && namesFields(connection);
  let o = 0;
  let runStart = lines[0];
  let runEnd = lines[1];
  for (let i = 0; i < hop.length; i++) {
    const b = lines[3 + 2 * i];
    const drop = hop[i] === 1 || (named && connection!.includes(res.key(i)));
    if (!drop && hop[i] === 2) return -1; // joining Via values: take the string path
    if (drop) {
      if (runEnd > runStart) {
        if (o + (runEnd - runStart) > dst.length) return -1;
        dst.set(src.subarray(runStart, runEnd), o);
        o += runEnd - runStart;
      }
      runStart = runEnd = b;
    } else runEnd = b;
  }
  if (runEnd > runStart) {
    if (o + (runEnd - runStart) > dst.length) return -1;
    dst.set(src.subarray(runStart, runEnd), o);
    o += runEnd - runStart;
  }
  if (o + via.length > dst.length) return -1;
  dst[7] = 49; // an "HTTP/1.0" upstream: we answer as HTTP/1.1
  dst.set(via, o);
  return o + via.length;
}

/** Whether Connection tokens name a field beyond the hop-by-hop ones (and "close", which names none). */
function namesFields(tokens: readonly string[]): boolean {
  for (let i = 0; i < tokens.length; i++) if (tokens[i] !== "close" && !isHopByHop(tokens[i])) return true;
  return false;
}
