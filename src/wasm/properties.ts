/**
 * The request properties a plugin reads with `proxy_get_property`, in
 * Envoy's attribute names and encodings (strings as bytes, integers as
 * little-endian i64, maps in the pairs encoding). Plugin-level ones
 * (`plugin_name`, ...) are the plugin's (plugin.ts); values a plugin set on
 * its stream win over both (stream.ts).
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import { encodePairs } from "./header_maps.ts";

const enc = new TextEncoder();

/** What properties read of a request's plugin run besides its context. */
export interface RunState {
  /** The request target, as plugins rewrote it. */
  readonly target: string;
  /** The response status once on_response_headers runs, else 0. */
  readonly resStatus: number;
  readonly resHeaders: HeaderList | null;
}

/** Property `key` (segments joined by "."): null = not available on this request, undefined = unknown. */
export function requestProperty(
  ctx: RequestContext,
  run: RunState,
  key: string,
): Uint8Array | null | undefined {
  switch (key) {
    case "request.path":
      return enc.encode(run.target);
    case "request.url_path":
      return enc.encode(ctx.path || run.target.split("?")[0]);
    case "request.host":
      return enc.encode(ctx.authority);
    case "request.scheme":
      return enc.encode(ctx.scheme);
    case "request.method":
      return enc.encode(ctx.method);
    case "request.headers":
      return pairsOf(ctx.headers);
    case "request.referer":
      return str(ctx.headers.get("referer"));
    case "request.useragent":
      return str(ctx.headers.get("user-agent"));
    case "request.id":
      return enc.encode(ctx.id);
    case "request.protocol":
      return enc.encode(ctx.protocol);
    case "request.query":
      return enc.encode(ctx.query);
    case "request.time":
      return i64((performance.timeOrigin + ctx.start) * 1e6);
    case "request.duration":
      return i64((performance.now() - ctx.start) * 1e6);
    case "request.size":
      return ctx.body.length >= 0 ? i64(ctx.body.length) : null;
    case "response.code":
      return run.resStatus > 0 ? i64(run.resStatus) : null;
    case "response.code_details":
      return run.resStatus > 0 ? enc.encode("via_upstream") : null;
    case "response.headers":
      return run.resHeaders !== null ? pairsOf(run.resHeaders) : null;
    case "response.size":
      return i64(ctx.bytesOut);
    case "source.address":
    case "source.port":
    case "destination.address":
    case "destination.port":
    case "upstream.address":
    case "upstream.port":
      return addressProperty(key, ctx);
    case "connection.mtls":
      return new Uint8Array([ctx.clientCert !== null ? 1 : 0]);
    case "connection.requested_server_name":
      return ctx.scheme === "https" ? enc.encode(ctx.sni) : null;
    case "connection.subject_peer_certificate":
      // As Envoy: a string on TLS connections (empty without a client certificate), else not found.
      return ctx.scheme === "https" ? enc.encode(ctx.clientCert?.subject ?? "") : null;
    case "connection.uri_san_peer_certificate":
      return firstSan(ctx, "URI:");
    case "connection.dns_san_peer_certificate":
      return firstSan(ctx, "DNS:");
    case "route_name":
    case "xds.route_name":
      return ctx.route !== null ? enc.encode(ctx.route.id) : null;
    case "cluster_name":
    case "xds.cluster_name": {
      const up = (ctx.route as { config?: { upstream?: string } } | null)?.config?.upstream;
      return up !== undefined ? enc.encode(up) : null;
    }
    default:
      // Route metadata (Envoy's xds.route_metadata; `metadata` is the stream's, seeded from it).
      if (key.startsWith("xds.route_metadata") || key.startsWith("metadata")) {
        return metadataProperty(ctx, key);
      }
      return undefined;
  }
}

/** A connection's addresses as the address properties read them (a RequestContext, a network session). */
export interface ConnectionAddresses {
  readonly clientIp: string;
  readonly clientPort: number;
  /** The listener side; "" when unknown. */
  readonly localAddr: string;
  readonly localPort: number;
  /** "host:port" of the upstream endpoint once chosen, else "". */
  readonly upstreamAddr: string;
}

/** `source.*`, `destination.*` (the listener side, not the authority, as Envoy) and `upstream.*`. */
export function addressProperty(key: string, a: ConnectionAddresses): Uint8Array | null | undefined {
  switch (key) {
    case "source.address":
      return enc.encode(hostPort(a.clientIp, a.clientPort));
    case "source.port":
      return i64(a.clientPort);
    case "destination.address":
      return a.localAddr !== "" ? enc.encode(hostPort(a.localAddr, a.localPort)) : null;
    case "destination.port":
      return a.localPort > 0 ? i64(a.localPort) : null;
    case "upstream.address":
      return a.upstreamAddr !== "" ? enc.encode(a.upstreamAddr) : null;
    case "upstream.port": {
      const m = /:(\d+)$/.exec(a.upstreamAddr);
      return m ? i64(Number(m[1])) : null;
    }
    default:
      return undefined;
  }
}

/** A value under the route's `metadata`, by the rest of `key`; undefined when absent. */
function metadataProperty(ctx: RequestContext, key: string): Uint8Array | null | undefined {
  const rest = key.startsWith("xds.route_metadata") ? key.slice(18) : key.slice(8);
  if (rest !== "" && rest[0] !== ".") return undefined;
  let v = (ctx.route as { config?: { metadata?: unknown } } | null)?.config?.metadata;
  for (const seg of rest === "" ? [] : rest.slice(1).split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  return encodeValue(v);
}

/** Envoy's encodings: strings raw, integers 8-byte LE, doubles 8-byte LE, booleans one byte, the rest JSON. */
function encodeValue(v: unknown): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (typeof v === "string") return enc.encode(v);
  if (typeof v === "boolean") return new Uint8Array([v ? 1 : 0]);
  if (typeof v === "number") {
    if (Number.isInteger(v)) return i64(v);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    return b;
  }
  return enc.encode(JSON.stringify(v));
}

function i64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(Math.trunc(n)), true);
  return b;
}

function pairsOf(h: HeaderList): Uint8Array {
  const out: [string, string][] = [];
  for (let i = 0; i < h.keys.length; i++) out.push([h.keys[i], h.values[i]]);
  // Envoy encodes map-valued properties in the pairs format.
  return encodePairs(out);
}

function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Envoy's `*_san_peer_certificate`: the first SAN of that kind; not found when there is none. */
function firstSan(ctx: RequestContext, prefix: string): Uint8Array | null {
  const san = ctx.clientCert?.sans.find((s) => s.startsWith(prefix));
  return san !== undefined ? enc.encode(san.slice(prefix.length)) : null;
}

function str(v: string | undefined): Uint8Array | null {
  return v === undefined ? null : enc.encode(v);
}
