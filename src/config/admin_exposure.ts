/**
 * Whether the admin API is reachable beyond loopback without credentials.
 * `loom run` refuses such a config unless `admin.insecure: true` is written;
 * `loom validate` reports it as a warning either way.
 *
 * @module
 */

import type { AdminConfig, ConfigError } from "./types.ts";
import { type Position, UNKNOWN_POSITION } from "./position.ts";

const IPV4_LOOPBACK = /^(?:::ffff:)?127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * True when `hostname` (unbracketed, as in {@link AdminConfig.hostname}) names
 * loopback only: 127.0.0.0/8, ::1 or localhost. "" (all interfaces) is not.
 */
export function isLoopbackHostname(hostname: string): boolean {
  const h = hostname.toLowerCase();
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const m = IPV4_LOOPBACK.exec(h);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

/** True when `auth` is enabled and defines a token or at least one user. */
export function hasAdminCredentials(auth: AdminConfig["auth"] | undefined): boolean {
  if (auth?.enabled !== true) return false;
  return (typeof auth.token === "string" && auth.token !== "") || Object.keys(auth.users ?? {}).length > 0;
}

/**
 * The problem with an admin API that listens beyond loopback without
 * credentials, at the line of `admin.address`: `refuse` unless
 * `admin.insecure: true`. Null when the admin API is off, on loopback, or
 * authenticated. Reads the normalised (possibly partial) config defensively.
 */
export function adminExposure(
  config: Record<string, unknown>,
  positions: ReadonlyMap<string, Position>,
): { refuse: boolean; problem: ConfigError } | null {
  const admin = config.admin as Partial<AdminConfig> | undefined;
  if (admin?.enabled === false || typeof admin?.hostname !== "string") return null;
  if (isLoopbackHostname(admin.hostname) || hasAdminCredentials(admin.auth)) return null;
  const pos = positions.get("admin.address") ?? positions.get("admin") ?? UNKNOWN_POSITION;
  const where = admin.hostname === "" ? `all interfaces ("${admin.address}")` : `"${admin.address}"`;
  const why = admin.auth?.enabled === true ? "admin.auth has no token and no users" : "no admin.auth";
  const message = admin.insecure === true
    ? `the admin API listens on ${where}, beyond loopback, without authentication (${why}); ` +
      "admin.insecure: true accepts this: GET /config and every write are refused, the rest is open"
    : `the admin API would listen on ${where}, beyond loopback, without authentication (${why}); ` +
      '"loom run" refuses to start: set admin.auth.token (e.g. "${LOOM_ADMIN_TOKEN}") or admin.auth.users, ' +
      'bind it to loopback ("127.0.0.1:9091"), or write admin.insecure: true';
  return { refuse: admin.insecure !== true, problem: { path: "admin.address", ...pos, message } };
}
