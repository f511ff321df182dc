/**
 * The one client-IP rule, shared by access logs, IP filters, rate limits and
 * header templates: the socket peer, unless the peer is a configured trusted
 * proxy; then the right-most address of `X-Forwarded-For` (else `Forwarded`
 * `for=`) that is not itself a trusted proxy, walking right to left as
 * nginx's `real_ip_recursive on` does. A malformed entry ends the walk at
 * the last address known good.
 *
 * @module
 */
import { type CidrSet, parseIp } from "./cidr.ts";

/** Strips Forwarded's quotes, IPv6 brackets and a port: `"[2001:db8::1]:4711"` → `2001:db8::1`. */
function forwardedNode(v: string): string {
  let s = v.trim();
  if (s.startsWith('"') && s.endsWith('"')) s = s.slice(1, -1);
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    return end === -1 ? "" : s.slice(1, end);
  }
  const colon = s.indexOf(":");
  return colon !== -1 && s.indexOf(":", colon + 1) === -1 ? s.slice(0, colon) : s;
}

/** The addresses a proxy chain reports, left (original client) to right (nearest proxy). */
function chainOf(xff: string | undefined, forwarded: string | undefined): string[] {
  if (xff !== undefined) return xff.split(",").map((s) => s.trim());
  if (forwarded === undefined) return [];
  const out: string[] = [];
  for (const element of forwarded.split(",")) {
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq !== -1 && pair.slice(0, eq).trim().toLowerCase() === "for") {
        out.push(forwardedNode(pair.slice(eq + 1)));
      }
    }
  }
  return out;
}

/**
 * The client address for a request from `peer` carrying `xff` / `forwarded`
 * (all field lines joined), given the trusted proxies (null: none).
 */
export function resolveClientIp(
  peer: string,
  trusted: CidrSet | null,
  xff: string | undefined,
  forwarded: string | undefined,
): string {
  if (trusted === null || !trusted.has(peer)) return peer;
  const chain = chainOf(xff, forwarded);
  let client = peer;
  for (let i = chain.length - 1; i >= 0; i--) {
    const a = chain[i];
    if (parseIp(a) === null) break;
    client = a;
    if (!trusted.has(a)) break;
  }
  return client;
}
