/**
 * Credentials of the admin API: HTTP Basic (users map username -> SHA-256 hex
 * of the password, Loom's config format) and a bearer token, kept only as its
 * SHA-256 and compared in constant time.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";

/** Settings of {@link adminAuth}. */
export interface AdminAuthOptions {
  /** username -> lowercase or uppercase SHA-256 hex of the password. */
  users: Record<string, string>;
  /** `Authorization: Bearer <token>` is accepted when set. */
  token?: string;
  realm: string;
  /** Paths served without credentials. */
  publicPaths: ReadonlySet<string>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Compared against when the user is unknown, so timing does not reveal which usernames exist. */
const DUMMY_HASH = new Uint8Array(32);

const sha256 = async (text: string) =>
  new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));

/** Hono middleware enforcing Basic or bearer auth except on `publicPaths`. */
export function adminAuth(opts: AdminAuthOptions): MiddlewareHandler {
  const users = new Map<string, Uint8Array | null>();
  for (const [name, hex] of Object.entries(opts.users)) users.set(name, hexToBytes(hex));
  // Only the hash is kept: the plain token is not captured by the middleware.
  const tokenHash = opts.token ? sha256(opts.token) : null;
  const realm = opts.realm.replace(/["\\]/g, "");
  const challenges: string[] = [];
  if (users.size > 0) challenges.push(`Basic realm="${realm}", charset="UTF-8"`);
  if (tokenHash !== null) challenges.push(`Bearer realm="${realm}"`);
  const challenge = challenges.join(", ");

  return async (c, next) => {
    if (opts.publicPaths.has(c.req.path)) return next();
    const header = c.req.header("authorization");
    const bearer = parseBearer(header);
    if (bearer !== null ? await verifyToken(bearer, tokenHash) : await verify(header, users)) return next();
    return c.json({ error: "unauthorized" }, 401, challenge ? { "WWW-Authenticate": challenge } : {});
  };
}

/** The token of `Bearer <token>`; null for other schemes. */
export function parseBearer(header: string | undefined): string | null {
  const m = /^bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m ? m[1] : null;
}

async function verifyToken(token: string, expected: Promise<Uint8Array> | null): Promise<boolean> {
  const digest = await sha256(token);
  return timingSafeEqual(digest, (await expected) ?? DUMMY_HASH) && expected !== null;
}

async function verify(header: string | undefined, users: Map<string, Uint8Array | null>): Promise<boolean> {
  const creds = parseBasic(header);
  if (creds === null) return false;
  const stored = users.get(creds.user);
  const digest = await sha256(creds.password);
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
