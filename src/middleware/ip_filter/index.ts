/**
 * `ip_filter`: admits or refuses a request by its client address, using the
 * one client-IP rule (`ctx.clientIp`: the socket peer, or the address a
 * configured trusted proxy reported; src/net/client_ip.ts). Deny ranges are
 * checked first; a non-empty allow list then admits only its ranges.
 *
 * ```yaml
 * middleware:
 *   - ip_filter: { allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.66.0.0/16"] }
 * ```
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";
import { CidrSet } from "../../net/cidr.ts";
import { reject } from "../reject.ts";

/** The normalised options. */
export interface IpFilterOptions {
  allow: string[];
  deny: string[];
  status: 403 | 404;
}

/** The middleware for `o`; the CIDR sets are built once. */
export function ipFilter(o: IpFilterOptions): Middleware {
  const allow = o.allow.length > 0 ? new CidrSet(o.allow) : null;
  const deny = o.deny.length > 0 ? new CidrSet(o.deny) : null;
  const message = o.status === 404 ? "not found" : "client address not allowed";
  return {
    name: "ip_filter",
    request: (ctx, next) => {
      const ip = ctx.clientIp;
      if (deny !== null && deny.has(ip)) return reject(ctx, "ip_filter", "denied", o.status, message);
      if (allow !== null && !allow.has(ip)) return reject(ctx, "ip_filter", "not_allowed", o.status, message);
      return next();
    },
  };
}
