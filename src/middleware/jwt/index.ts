/**
 * `jwt`: verifies a JSON Web Token (RFC 7519, signed: JWS compact form) on
 * every request, with `jose` doing signature and claim checks.
 *
 * ```yaml
 * middleware:
 *   - jwt:
 *       issuer: https://idp.example.com/realms/main
 *       audience: orders-api
 *       discovery: true                       # JWK Set found via /.well-known/openid-configuration
 *       jwks: { upstream: idp, algorithms: [RS256, ES256] }
 *       keys:                                 # and/or keys given inline or in files
 *         - { kid: legacy, secret: "${JWT_SECRET}", algorithms: [HS256] }
 *       scopes: [orders:read]
 *       forward_claims: { sub: x-user-id }
 * ```
 *
 * - Keys: each source (an inline/file key, the JWK Set) lists its algorithms;
 *   a token's `alg` must be one its key may verify (see keys.ts), so `none`
 *   and algorithm confusion (an RSA key as an HMAC secret) never verify.
 *   Keys are imported when built or fetched, never per request.
 * - The token: `Authorization: Bearer` by default, or a cookie or query
 *   parameter (`from`); longer than `max_size` is refused unparsed.
 *   A token in the query is masked in the access log's path.
 * - Checks: signature, `exp`/`nbf` with `leeway`, `iss`, `aud`,
 *   `required_claims`, then `scopes` (`scope`, space-separated, or `scp`)
 *   and `roles`.
 * - Answers (RFC 6750): no token → 401 `WWW-Authenticate: Bearer realm=".."`
 *   without an error code; a malformed request (two tokens, an empty bearer)
 *   → 400 `invalid_request`; a bad token → 401 `invalid_token` with an
 *   `error_description`; missing scope or role → 403 `insufficient_scope`;
 *   no JWK Set could ever be fetched → 503. Each is a rejection
 *   `jwt/<reason>` in metrics and the access log.
 * - After success the claims are in `ctx.vars` under JWT_CLAIMS_VAR
 *   (`${jwt.sub}` in header templates), and `forward_claims` become request
 *   headers upstream (client-sent values of those names are always dropped).
 *
 * @module
 */
import { errors, jwtVerify, type JWTVerifyOptions } from "jose";
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { MiddlewareEnv } from "../registry.ts";
import { reject } from "../reject.ts";
import { JWT_CLAIMS_VAR } from "../template.ts";
import {
  cookieValues,
  headerValues,
  MASKED,
  queryValues,
  removeCookie,
  rewriteQueryParam,
} from "../credentials.ts";
import {
  importKey,
  keyAlgorithms,
  KeyIndex,
  type KeyJwk,
  parseJwk,
  parseKeyFile,
  parsePem,
  secretJwk,
} from "./keys.ts";
import type { VerifyKey } from "./keys.ts";
import { JwksCache } from "./jwks.ts";
import { VerifiedTokens } from "./verified.ts";

/** One inline or file key source. */
export interface JwtKeyOptions {
  kid?: string;
  algorithms: string[];
  secret?: string;
  encoding: "utf8" | "base64" | "base64url";
  pem?: string;
  jwk?: Record<string, unknown>;
  file?: string;
}

/** The remote JWK Set. */
export interface JwtJwksOptions {
  upstream: string;
  path?: string;
  host?: string;
  algorithms: string[];
  min_refresh_interval: number;
  default_max_age: number;
  timeout: number;
}

/** The `jwt` middleware's options (normalised: durations in ms, sizes in bytes). */
export interface JwtOptions {
  keys?: JwtKeyOptions[];
  jwks?: JwtJwksOptions;
  discovery: boolean;
  issuer?: string[];
  audience?: string[];
  leeway: number;
  require_exp: boolean;
  required_claims: string[];
  scopes: string[];
  roles?: { claim: string; any_of: string[] };
  from: { header?: string; cookie?: string; query?: string };
  scheme: string;
  max_size: number;
  forward_claims: Record<string, string>;
  strip: boolean;
  cache_size: number;
  realm: string;
}

/** Most keys tried for one token (a token without kid against a set of many keys). */
const MAX_TRIES = 4;

/** Characters allowed in an error_description (RFC 6750 §3). */
const DESCRIPTION_UNSAFE = /[^\x20\x21\x23-\x5B\x5D-\x7E]/g;

/** A claim by name; a dotted name not present as such is walked (`realm_access.roles`). */
type ClaimGetter = (claims: Record<string, unknown>) => unknown;

function claimGetter(name: string): ClaimGetter {
  const parts = name.split(".");
  if (parts.length === 1) return (c) => c[name];
  return (c) => {
    if (Object.hasOwn(c, name)) return c[name];
    let v: unknown = c;
    for (const p of parts) {
      if (v === null || typeof v !== "object" || !Object.hasOwn(v, p)) return undefined;
      v = (v as Record<string, unknown>)[p];
    }
    return v;
  };
}

/** A claim as a list of strings: an array's strings, or a space-separated string. */
function stringList(v: unknown): string[] {
  if (typeof v === "string") return v.split(" ").filter((s) => s !== "");
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === "string");
  return [];
}

/** A claim as a header value, or null (absent, or not sendable). */
function headerValue(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  const s = typeof v === "string"
    ? v
    : typeof v === "number" || typeof v === "boolean"
    ? String(v)
    : JSON.stringify(v);
  // Visible ASCII and space go as they are; anything else percent-encoded (never CR/LF into a head).
  return /^[\x20-\x7e]*$/.test(s) ? s : encodeURIComponent(s);
}

/** The token's protected header, or null when it is not a three-part JWS with a JSON header. */
function tokenHeader(token: string): { alg: unknown; kid: unknown } | null {
  const dot = token.indexOf(".");
  if (dot <= 0) return null;
  const dot2 = token.indexOf(".", dot + 1);
  if (dot2 === -1 || token.indexOf(".", dot2 + 1) !== -1) return null;
  const b64 = token.slice(0, dot);
  if (!/^[A-Za-z0-9_-]+$/.test(b64)) return null;
  try {
    const h = JSON.parse(atob(b64.replaceAll("-", "+").replaceAll("_", "/")));
    return h !== null && typeof h === "object" && !Array.isArray(h) ? h : null;
  } catch {
    return null;
  }
}

/** Why a token or request is refused: the rejection reason and the error_description. */
class Failure {
  constructor(readonly reason: string, readonly description: string) {}
}

/** A jose error as a rejection reason and description. */
function failureOf(e: unknown): Failure {
  if (e instanceof errors.JWTExpired) return new Failure("expired", "token expired");
  if (e instanceof errors.JWTClaimValidationFailed) {
    const claim = e.claim.replace(DESCRIPTION_UNSAFE, "?");
    if (e.reason === "missing") return new Failure("missing_claim", `required claim ${claim} missing`);
    if (e.claim === "nbf") return new Failure("not_yet_valid", "token not yet valid");
    if (e.claim === "iss") return new Failure("bad_issuer", "issuer not accepted");
    if (e.claim === "aud") return new Failure("bad_audience", "audience not accepted");
    return new Failure("bad_claim", `claim ${claim} invalid`);
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) {
    return new Failure("bad_signature", "signature verification failed");
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return new Failure("alg_not_allowed", "algorithm not allowed");
  return new Failure("malformed", "malformed token");
}

/** Builds the static keys (sync checks: throws on a bad key) and starts importing them. */
function staticKeys(list: readonly JwtKeyOptions[]): Promise<KeyIndex> {
  const parsed: { jwk: KeyJwk; algs: string[]; kid: string | undefined }[] = [];
  list.forEach((k, i) => {
    const where = `jwt: keys[${i}]`;
    const given = [k.secret, k.pem, k.jwk, k.file].filter((v) => v !== undefined).length;
    if (given !== 1) throw new Error(`${where}: needs exactly one of secret, pem, jwk, file`);
    try {
      let jwks: KeyJwk[];
      if (k.secret !== undefined) jwks = [secretJwk(k.secret, k.encoding)];
      else if (k.pem !== undefined) jwks = [parsePem(k.pem)];
      else if (k.jwk !== undefined) {
        if (k.jwk.kty === "oct") throw new Error("HMAC secrets go in `secret`, not an inline jwk");
        jwks = [parseJwk(k.jwk)];
      } else jwks = parseKeyFile(k.file!);
      for (const jwk of jwks) {
        // Inline keys: every configured algorithm must fit. A file's JWK Set: each member takes what fits.
        const algs = keyAlgorithms(jwk, k.algorithms, jwks.length === 1);
        if (algs.length === 0) continue;
        parsed.push({ jwk, algs, kid: k.kid ?? jwk.kid });
      }
      if (!parsed.length) throw new Error("no key usable with the configured algorithms");
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
  });
  return Promise.all(parsed.map((p) => importKey(p.jwk, p.algs, p.kid))).then((keys) => new KeyIndex(keys));
}

/** The middleware for `o`; `env` reaches the JWK Set's upstream. Throws on a bad key or a missing upstream. */
export function jwt(o: JwtOptions, env: MiddlewareEnv): Middleware {
  const keyList = o.keys ?? [];
  if (keyList.length === 0 && o.jwks === undefined) throw new Error("jwt: needs keys or jwks");
  if (o.discovery) {
    if (o.jwks === undefined) throw new Error("jwt: discovery needs jwks.upstream");
    if (o.issuer?.length !== 1) throw new Error("jwt: discovery needs exactly one issuer");
    if (o.jwks.path !== undefined) throw new Error("jwt: jwks.path comes from discovery; remove it");
  } else if (o.jwks !== undefined && o.jwks.path === undefined) {
    throw new Error("jwt: jwks needs path (or discovery: true)");
  }
  if (o.jwks !== undefined && !env.hasUpstream(o.jwks.upstream)) {
    throw new Error(`jwt: jwks.upstream "${o.jwks.upstream}" is not defined`);
  }

  let staticIndex: KeyIndex | null = null;
  const staticReady = keyList.length === 0 ? null : staticKeys(keyList).then((idx) => {
    staticIndex = idx;
  });
  // An import failure after the synchronous checks would be a runtime bug: surface it per request.
  staticReady?.catch(() => {});

  let jwks: JwksCache | null = null;
  if (o.jwks !== undefined) {
    const j = o.jwks;
    jwks = new JwksCache(
      {
        upstream: j.upstream,
        path: j.path,
        host: j.host,
        issuer: o.discovery ? o.issuer![0] : undefined,
        algorithms: j.algorithms,
        minRefreshMs: j.min_refresh_interval,
        defaultMaxAgeMs: j.default_max_age,
        timeoutMs: j.timeout,
      },
      (path, host, timeoutMs) =>
        env.call(j.upstream, {
          method: "GET",
          path,
          authority: host,
          headers: [["accept", "application/json"]],
          body: new Uint8Array(0),
        }, timeoutMs),
    );
    jwks.start();
  }
  const jwksCache = jwks;
  const verified = new VerifiedTokens(
    o.cache_size,
    Math.floor(o.leeway / 1000),
    (key) => (staticIndex as KeyIndex | null)?.has(key) === true || jwksCache?.usable(key) === true,
  );
  const allowedAlgs = new Set([...keyList.flatMap((k) => k.algorithms), ...(o.jwks?.algorithms ?? [])]);

  const verifyOptions: JWTVerifyOptions = {
    algorithms: [...allowedAlgs],
    clockTolerance: Math.floor(o.leeway / 1000),
    requiredClaims: [...new Set([...(o.require_exp ? ["exp"] : []), ...o.required_claims])],
  };
  if (o.issuer !== undefined) verifyOptions.issuer = o.issuer;
  if (o.audience !== undefined) verifyOptions.audience = o.audience;

  const realm = `Bearer realm="${o.realm}"`;
  const challenge = (error: string, description: string, extra = ""): [string, string][] => [[
    "www-authenticate",
    `${realm}, error="${error}", error_description="${description.replace(DESCRIPTION_UNSAFE, "?")}"${extra}`,
  ]];
  const invalid = (ctx: RequestContext, f: Failure) =>
    reject(ctx, "jwt", f.reason, 401, f.description, challenge("invalid_token", f.description));
  const badRequest = (ctx: RequestContext, reason: string, description: string) =>
    reject(ctx, "jwt", reason, 400, description, challenge("invalid_request", description));
  const scopeParam = o.scopes.length > 0 ? `, scope="${o.scopes.join(" ")}"` : "";
  const forbidden = (ctx: RequestContext, reason: string, description: string) =>
    reject(ctx, "jwt", reason, 403, description, challenge("insufficient_scope", description, scopeParam));

  const scheme = o.scheme.toLowerCase();
  const header = o.from.header?.toLowerCase();
  const cookie = o.from.cookie;
  const query = o.from.query;
  const getRoles = o.roles === undefined ? null : claimGetter(o.roles.claim);
  const rolesAny = o.roles?.any_of ?? [];
  const forward = Object.entries(o.forward_claims).map(([claim, h]) =>
    [claimGetter(claim), h.toLowerCase()] as const
  );

  /** The token, or a refusal: undefined = none sent; a Failure = malformed request. */
  function extract(ctx: RequestContext): string | undefined | Failure {
    let values: string[];
    if (header !== undefined) {
      values = headerValues(ctx.headers, header);
      if (values.length === 0) return undefined;
      if (values.length > 1) return new Failure("multiple_tokens", `more than one ${header} field`);
      let v = values[0].trim();
      if (scheme !== "") {
        const sp = v.indexOf(" ");
        // Another scheme (Basic ...) is not a bearer token: the same as none.
        if ((sp === -1 ? v : v.slice(0, sp)).toLowerCase() !== scheme) return undefined;
        v = sp === -1 ? "" : v.slice(sp + 1).trim();
      }
      if (v === "" || v.includes(" ")) return new Failure("bad_request", "malformed credentials");
      return v;
    }
    if (cookie !== undefined) values = cookieValues(ctx.headers, cookie);
    else {
      const q = queryValues(ctx.query, query!);
      if (q === null) return new Failure("bad_request", "malformed query");
      values = q;
    }
    if (values.length === 0) return undefined;
    if (values.length > 1) return new Failure("multiple_tokens", "more than one token");
    if (values[0] === "") return new Failure("bad_request", "empty token");
    return values[0];
  }

  async function verify(token: string): Promise<Record<string, unknown> | Failure> {
    if (token.length > o.max_size) return new Failure("token_too_large", "token too large");
    const known = verified.get(token);
    if (known !== undefined) return known;
    const h = tokenHeader(token);
    if (h === null) return new Failure("malformed", "malformed token");
    const alg = h.alg;
    if (typeof alg !== "string" || !allowedAlgs.has(alg)) {
      return new Failure("alg_not_allowed", "algorithm not allowed");
    }
    if (h.kid !== undefined && typeof h.kid !== "string") return new Failure("malformed", "malformed token");
    const kid = h.kid as string | undefined;
    if (staticReady !== null && staticIndex === null) await staticReady;
    const candidates: VerifyKey[] = [];
    (staticIndex as KeyIndex | null)?.find(kid, alg, candidates);
    if (jwks !== null) {
      const wait = jwks.find(kid, alg, candidates);
      if (wait !== undefined) await wait;
    }
    if (candidates.length === 0) {
      if (jwks !== null && !jwks.available && staticIndex === null) {
        return new Failure("keys_unavailable", "signing keys unavailable");
      }
      return new Failure("unknown_key", "no key for this token");
    }
    let last: Failure = new Failure("bad_signature", "signature verification failed");
    for (let i = 0; i < candidates.length && i < MAX_TRIES; i++) {
      try {
        const { payload } = await jwtVerify(token, candidates[i].byAlg.get(alg)!, verifyOptions);
        verified.add(token, payload as Record<string, unknown>, candidates[i]);
        return payload as Record<string, unknown>;
      } catch (e) {
        last = failureOf(e);
        if (last.reason !== "bad_signature") return last;
      }
    }
    return last;
  }

  return {
    name: "jwt",
    request: async (ctx, next) => {
      const token = extract(ctx);
      // Whatever the outcome, the access log must not show a token (even a refused one may be real).
      if (query !== undefined && ctx.query !== "") ctx.target = rewriteQueryParam(ctx.target, query, MASKED);
      if (token === undefined) {
        return reject(ctx, "jwt", "missing_token", 401, "authentication required", [[
          "www-authenticate",
          realm,
        ]]);
      }
      if (typeof token !== "string") return badRequest(ctx, token.reason, token.description);
      const claims = await verify(token);
      if (claims instanceof Failure) {
        if (claims.reason === "keys_unavailable") {
          return reject(ctx, "jwt", claims.reason, 503, claims.description);
        }
        return invalid(ctx, claims);
      }
      if (o.scopes.length > 0) {
        const granted = claims.scope !== undefined ? stringList(claims.scope) : stringList(claims.scp);
        if (!o.scopes.every((s) => granted.includes(s))) {
          return forbidden(ctx, "insufficient_scope", "insufficient scope");
        }
      }
      if (getRoles !== null) {
        const roles = stringList(getRoles(claims));
        if (!rolesAny.some((r) => roles.includes(r))) {
          return forbidden(ctx, "missing_role", "required role missing");
        }
      }
      ctx.vars.set(JWT_CLAIMS_VAR, claims);
      return next();
    },
    upstreamRequest: forward.length === 0 && !o.strip ? undefined : (ctx, head) => {
      const claims = ctx.vars.get(JWT_CLAIMS_VAR) as Record<string, unknown> | undefined;
      for (const [get, h] of forward) {
        const v = claims === undefined ? null : headerValue(get(claims));
        if (v === null) head.headers.delete(h);
        else head.headers.set(h, v);
      }
      if (o.strip) {
        if (header !== undefined) head.headers.delete(header);
        else if (cookie !== undefined) removeCookie(head.headers, cookie);
        else head.target = rewriteQueryParam(head.target, query!, null);
      }
    },
  };
}
