/**
 * `basic_auth`: HTTP Basic authentication (RFC 7617) against bcrypt
 * (`$2a$`, `$2b$`, `$2y$`) and argon2id password hashes, from the config or an
 * htpasswd-style file.
 *
 * ```yaml
 * middleware:
 *   - basic_auth:
 *       realm: admin
 *       users: { alice: "$2y$10$...", bob: "$argon2id$v=19$m=19456,t=2,p=1$..." }
 *       users_file: /etc/loom/htpasswd   # name:hash lines, re-read on reload
 *       user_header: x-auth-user         # the user name, upstream ("" for none)
 * ```
 *
 * A request without valid credentials gets 401 with
 * `WWW-Authenticate: Basic realm="...", charset="UTF-8"` (reasons `missing`,
 * `malformed`, `invalid`). An authenticated request goes on with the user
 * name in `user_header` (client-sent copies replaced) and in
 * `ctx.vars.get(BASIC_AUTH_USER_VAR)`, and without its Authorization field
 * (`strip_authorization`).
 *
 * Cost: a hash verification takes tens to hundreds of milliseconds of CPU by
 * design, so it runs on a worker thread (verify.ts), bounded by `max_pending`
 * waiting verifications (more get 503, reason `busy`), and concurrent
 * requests with the same credentials share one verification. A success is
 * remembered for `cache_ttl` (up to `cache_size` credentials, oldest dropped
 * first), keyed by SHA-256 of a per-process random salt and the credentials,
 * so neither passwords nor plain hashes of them are kept: a keep-alive client
 * pays the hash once, then a few microseconds per request. A user unknown to
 * the list is checked against a real user's hash all the same, so the answer
 * time does not tell which names exist. Failures are not remembered.
 *
 * @module
 */
import { createSHA256, type IHasher } from "hash-wasm";
import type { RequestContext } from "../../core/context.ts";
import type { Middleware, Next } from "../../core/middleware.ts";
import { type BasicAuthOptions, readUsersFile } from "../../config/middleware/basic_auth.ts";
import { logger } from "../../observability/logger.ts";
import { reject } from "../reject.ts";
import { sharedVerifier } from "./verify.ts";

export type { BasicAuthOptions };

/** Key in `ctx.vars` of the authenticated user name. */
export const BASIC_AUTH_USER_VAR = "loom.basic_auth.user";

const NAME = "basic_auth";
const RETRY: [string, string][] = [["retry-after", "1"]];

/** A remembered success. */
interface CacheEntry {
  user: string;
  expires: number;
}

/** Per-process random prefix of the cache keys (hex). */
const SALT = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0"))
  .join("");

let hasher: IHasher | null = null;
const hasherReady: Promise<IHasher> = createSHA256().then((h) => hasher = h);

/** SHA-256 of SALT and `token`, hex: a Map key that is neither the password nor a plain hash of it. */
function cacheKey(h: IHasher, token: string): string {
  h.init();
  h.update(SALT + token);
  return h.digest("hex");
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `user:password` from a Basic token (base64 of UTF-8), or null when malformed. */
export function decodeCredentials(token: string): [string, string] | null {
  let bin: string;
  try {
    bin = atob(token);
  } catch {
    return null;
  }
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return null;
  }
  const colon = text.indexOf(":");
  if (colon <= 0) return null;
  return [text.slice(0, colon), text.slice(colon + 1)];
}

/** The token of an `Authorization: Basic <token>` value (scheme case-insensitive), or null. */
export function basicToken(value: string): string | null {
  if (value.length < 7 || value.charCodeAt(5) !== 32) return null;
  const scheme = value.slice(0, 5);
  if (scheme !== "Basic" && scheme.toLowerCase() !== "basic") return null;
  const token = value.slice(6).trim();
  return token === "" ? null : token;
}

/** What checks a password against a hash (verify.ts's HashVerifier, or a test's). */
export interface PasswordVerifier {
  verify(hash: string, password: string): Promise<boolean>;
}

/** Options a test may add: the verifier and the clock. */
export interface BasicAuthDeps {
  verifier?: PasswordVerifier;
  now?: () => number;
}

/** The middleware for `o` (the users file is read here, once per snapshot). */
export function basicAuth(o: BasicAuthOptions, deps: BasicAuthDeps = {}): Middleware {
  const users = new Map<string, string>(Object.entries(o.users));
  if (o.users_file !== undefined) {
    for (const [name, hash] of readUsersFile(o.users_file)) {
      if (users.has(name)) throw new Error(`basic_auth: user "${name}" is in both users and ${o.users_file}`);
      users.set(name, hash);
    }
  }
  if (users.size === 0) throw new Error("basic_auth: no users (set users or users_file)");
  // Unknown names are checked against a real hash, so they cost what a wrong password does.
  const decoy = users.values().next().value!;
  const verifier = deps.verifier ?? sharedVerifier();
  const now = deps.now ?? Date.now;
  const challenge: [string, string][] = [["www-authenticate", `Basic realm="${o.realm}", charset="UTF-8"`]];
  const userHeader = o.user_header.toLowerCase();
  const strip = o.strip_authorization;
  const ttl = o.cache_ttl;
  const cacheSize = o.cache_size;
  const maxPending = o.max_pending;
  const cache = new Map<string, CacheEntry>();
  /** Verifications in progress by cache key: concurrent requests with the same credentials share one. */
  const inflight = new Map<string, Promise<string | null>>();
  let pending = 0;

  const remember = (key: string, user: string) => {
    if (ttl <= 0) return;
    cache.delete(key);
    if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!);
    cache.set(key, { user, expires: now() + ttl });
  };

  /** The user name when the credentials are right, else null. */
  const check = async ([name, password]: [string, string], key: string): Promise<string | null> => {
    const hash = users.get(name);
    const ok = await verifier.verify(hash ?? decoy, password);
    if (!ok || hash === undefined) return null;
    remember(key, name);
    return name;
  };

  const admit = (ctx: RequestContext, user: string, next: Next): Promise<void> => {
    if (strip) ctx.headers.delete("authorization");
    if (userHeader !== "") ctx.headers.set(userHeader, user);
    ctx.vars.set(BASIC_AUTH_USER_VAR, user);
    return next();
  };

  const deny = (ctx: RequestContext, reason: string) =>
    reject(ctx, NAME, reason, 401, "authentication required", challenge);

  /** A cache miss: verify (shared with concurrent requests bearing the same credentials). */
  const verify = async (ctx: RequestContext, next: Next, token: string, key: string): Promise<void> => {
    let run = inflight.get(key);
    if (run === undefined) {
      const creds = decodeCredentials(token);
      if (creds === null) return deny(ctx, "malformed");
      if (pending >= maxPending) {
        return reject(ctx, NAME, "busy", 503, "authentication is busy, retry shortly", RETRY);
      }
      pending++;
      run = check(creds, key).finally(() => {
        pending--;
        inflight.delete(key);
      });
      inflight.set(key, run);
    }
    let user: string | null;
    try {
      user = await run;
    } catch (e) {
      logger.error("basic_auth: password verification failed", { error: String(e) });
      return reject(ctx, NAME, "verifier_error", 503, "authentication is unavailable", RETRY);
    }
    return user === null ? deny(ctx, "invalid") : admit(ctx, user, next);
  };

  return {
    name: NAME,
    // Not async: a cache hit goes on to next() without an extra promise.
    request: (ctx, next) => {
      const value = ctx.headers.get("authorization");
      if (value === undefined) return deny(ctx, "missing");
      // Two Authorization fields: which one would the upstream believe? Neither.
      const keys = ctx.headers.keys;
      if (keys.indexOf("authorization") !== keys.lastIndexOf("authorization")) return deny(ctx, "malformed");
      const token = basicToken(value);
      if (token === null) return deny(ctx, "malformed");
      if (hasher === null) return hasherReady.then(() => verify(ctx, next, token, cacheKey(hasher!, token)));
      const key = cacheKey(hasher, token);
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.expires > now()) return admit(ctx, hit.user, next);
        cache.delete(key);
      }
      return verify(ctx, next, token, key);
    },
  };
}
