/**
 * HTTP Basic auth for the admin API. Users map username -> SHA-256 hex of the
 * password (Loom's config format).
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";

/** Settings of {@link basicAuth}. */
export interface BasicAuthOptions {
  /** username -> lowercase or uppercase SHA-256 hex of the password. */
  users: Record<string, string>;
  realm: string;
  /** Paths served without credentials. */
  publicPaths: ReadonlySet<string>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Compared against when the user is unknown, so timing does not reveal which usernames exist. */
const DUMMY_HASH = new Uint8Array(32);

/** Hono middleware enforcing Basic auth except on `publicPaths`. */
export function basicAuth(opts: BasicAuthOptions): MiddlewareHandler {
  const users = new Map<string, Uint8Array | null>();
  for (const [name, hex] of Object.entries(opts.users)) users.set(name, hexToBytes(hex));
  const challenge = `Basic realm="${opts.realm.replace(/["\\]/g, "")}", charset="UTF-8"`;

  return async (c, next) => {
    if (opts.publicPaths.has(c.req.path)) return next();
    if (await verify(c.req.header("authorization"), users)) return next();
    return c.json({ error: "unauthorized" }, 401, { "WWW-Authenticate": challenge });
  };
}

async function verify(header: string | undefined, users: Map<string, Uint8Array | null>): Promise<boolean> {
  const creds = parseBasic(header);
  if (creds === null) return false;
  const stored = users.get(creds.user);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(creds.password)));
  // Hash and compare even for unknown users (or malformed stored hashes) to keep timing uniform.
  const equal = timingSafeEqual(digest, stored ?? DUMMY_HASH);
  return equal && stored != null;
}

/** Parses `Basic base64(user:password)`; null when malformed. */
export function parseBasic(header: string | undefined): { user: string; password: string } | null {
  if (!header) return null;
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return null;
  let text: string;
  try {
    text = decoder.decode(Uint8Array.from(atob(m[1]), (ch) => ch.charCodeAt(0)));
  } catch {
    return null;
  }
  const i = text.indexOf(":");
  if (i < 0) return null;
  return { user: text.slice(0, i), password: text.slice(i + 1) };
}

/** Compares two byte arrays in time independent of where they differ. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function hexToBytes(hex: string): Uint8Array | null {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
