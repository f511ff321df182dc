/**
 * Header rules of a forwarding proxy (RFC 9110 7.6): hop-by-hop fields are
 * dropped, X-Forwarded-*, Forwarded and Via are added, Host is kept or
 * rewritten. The upstream request head is produced as text in one pass.
 */
import type { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import { tokenList } from "../http1/parse.ts";

/**
 * Fields that never cross the proxy (besides those listed in Connection):
 * connection, keep-alive, proxy-connection, te, transfer-encoding, upgrade,
 * plus content-length and host, which the proxy re-emits itself.
 */

/** HOP_BY_HOP.has(k) without hashing a fresh string: switch on length, then compare. */
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
      return k === "content-length";
    case 16:
      return k === "proxy-connection";
    case 17:
      return k === "transfer-encoding";
    default:
      return false;
  }
}

/** Whether `k` is one of the forwarding fields the proxy rewrites. */
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

function viaVersion(protocol: string): string {
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

/** Options for the upstream head. */
export interface UpstreamHeadOptions {
  method: string;
  /** Path and query sent upstream. */
  target: string;
  /** Host field value sent upstream. */
  host: string;
  /** Framing line(s): "content-length: N\r\n", "transfer-encoding: chunked\r\n" or "". */
  framing: string;
  /** Keep Upgrade/Connection: upgrade (WebSocket). */
  upgrade: string | undefined;
  requestId: string;
}

/**
 * Builds the HTTP/1.1 request head sent upstream from the client's request.
 * Connection-nominated fields are dropped; TE is kept only as "trailers".
 */
export function upstreamRequestHead(ctx: RequestContext, o: UpstreamHeadOptions): string {
  const { names, keys, values } = ctx.headers;
  let nominated: string[] | null = null;
  let te = false;
  let xff: string | undefined, fwd: string | undefined, via: string | undefined;
  let hasRequestId = false;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (k === "connection") {
      nominated = nominated === null ? tokenList(values[i]) : nominated.concat(tokenList(values[i]));
    } else if (k === "te") te = te || tokenList(values[i]).includes("trailers");
  }
  let s = o.method + " " + o.target + " HTTP/1.1\r\nhost: " + o.host + "\r\n";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (isHopByHop(k)) continue;
    if (isForwarding(k)) {
      const v = values[i];
      if (k === "x-forwarded-for") xff = xff === undefined ? v : xff + ", " + v;
      else if (k === "forwarded") fwd = fwd === undefined ? v : fwd + ", " + v;
      else if (k === "via") via = via === undefined ? v : via + ", " + v;
      continue; // x-forwarded-proto/host are replaced
    }
    if (nominated !== null && nominated.includes(k)) continue;
    if (k === "x-request-id") {
      // The gateway's id wins: a client id it rejected (or a second one) is not forwarded.
      if (o.requestId !== "" && (hasRequestId || values[i] !== o.requestId)) continue;
      hasRequestId = true;
    }
    s += names[i] + ": " + values[i] + "\r\n";
  }
  const ip = ctx.clientIp;
  s += "x-forwarded-for: " + (xff === undefined ? ip : xff + ", " + ip) + "\r\n";
  s += "x-forwarded-proto: " + ctx.scheme + "\r\n";
  if (ctx.authority !== "") s += "x-forwarded-host: " + ctx.authority + "\r\n";
  let f = "for=" + forwardedFor(ip) + ";proto=" + ctx.scheme;
  if (ctx.authority !== "") f += ";host=" + forwardedHost(ctx.authority);
  s += "forwarded: " + (fwd === undefined ? f : fwd + ", " + f) + "\r\n";
  const v = viaVersion(ctx.protocol) + " loom";
  s += "via: " + (via === undefined ? v : via + ", " + v) + "\r\n";
  if (!hasRequestId && o.requestId !== "") s += "x-request-id: " + o.requestId + "\r\n";
  if (te) s += "te: trailers\r\n";
  if (o.upgrade !== undefined) s += "connection: upgrade\r\nupgrade: " + o.upgrade + "\r\n";
  return s + o.framing + "\r\n";
}

/**
 * Drops hop-by-hop fields from an upstream response in place and adds Via.
 * `connection` is the parsed Connection token list of the response.
 */
export function filterResponseHeaders(
  h: HeaderList,
  connection: string[] | null,
  protocolVersion: string,
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
  const v = protocolVersion + " loom";
  h.append("via", via === undefined ? v : via + ", " + v);
}

/**
 * HTTP/1.1 fast path: copies the upstream's status line and kept field lines
 * as bytes from `src` (the upstream read buffer) into `dst`, then adds Via.
 * Returns the byte count, or -1 when `dst` is too small. Equivalent to
 * filterResponseHeaders + serialisation, without building or encoding strings.
 */
export function copyResponseHead(
  src: Uint8Array,
  lines: readonly number[],
  h: HeaderList,
  connection: string[] | null,
  dst: Uint8Array,
  via: Uint8Array,
): number {
  // Kept lines are copied in contiguous runs: usually one or two copies per head.
  const keys = h.keys;
  let o = 0;
  let runStart = lines[0];
  let runEnd = lines[1];
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const b = lines[3 + 2 * i];
    const drop = isHopByHop(k) || (connection !== null && connection.includes(k));
    if (!drop && k === "via") return -1; // joining Via values: take the string path
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
