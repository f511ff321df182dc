/**
 * Options of the `jwt` middleware (src/middleware/jwt/). Keys are checked
 * here as far as one field allows (a PEM must parse as a public key, a secret
 * must not look like one); checks across fields (an algorithm against its
 * key's type, an upstream's existence) run when the middleware is built.
 */
import { createPublicKey } from "node:crypto";
import { type Field, opt, req, t } from "../dsl.ts";
import { headerName } from "./headers.ts";

/** Signature algorithms the middleware verifies (never `none`). */
export const JWT_ALGORITHMS = [
  "HS256",
  "HS384",
  "HS512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

const algorithms = t.list(t.enum(JWT_ALGORITHMS), {
  minItems: 1,
  description: "Algorithms this key source may verify; a token's `alg` outside the list is refused.",
});

/** Why `pem` is not usable as a verification key, or undefined. */
export function pemProblem(pem: string): string | undefined {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    return "a private key: configure the public key (or a certificate) instead";
  }
  try {
    createPublicKey(pem);
    return undefined;
  } catch {
    return "not a PEM public key or certificate";
  }
}

/** True when `text` looks like an asymmetric key (PEM or JWK) rather than an HMAC secret. */
export function looksLikePublicKey(text: string): boolean {
  const s = text.trim();
  return s.startsWith("-----BEGIN") || /^\{[\s\S]*"kty"/.test(s) || /^(?:MII|ssh-|ecdsa-)/.test(s);
}

const secret = t.string({
  check: (v) => {
    if (looksLikePublicKey(v)) {
      return "looks like a public key: an asymmetric key must never be used as an HMAC secret " +
        "(algorithm confusion); give it as pem: with RS/PS/ES/EdDSA algorithms";
    }
    return v.length === 0 ? "must not be empty" : undefined;
  },
});

const keyEntry = t.object({
  kid: opt(t.string(), undefined, "Key id: tokens naming another kid do not use this key."),
  algorithms: req(algorithms),
  secret: opt(
    secret,
    undefined,
    "HMAC secret (HS* algorithms; at least as long as the hash: 32/48/64 bytes).",
  ),
  encoding: opt(t.enum(["utf8", "base64", "base64url"]), "utf8", "How `secret` is written."),
  pem: opt(t.string({ check: pemProblem }), undefined, "PEM public key (SPKI) or X.509 certificate."),
  jwk: opt(t.map(t.any()), undefined, "A public JWK (RSA, EC or OKP; HMAC secrets go in `secret`)."),
  file: opt(
    t.string({ file: true }),
    undefined,
    "A file holding a PEM, a JWK or a JWK Set (JSON); read at load and on every reload.",
  ),
}, { description: "One verification key: exactly one of secret, pem, jwk, file." });

const jwks = t.object({
  upstream: req(
    t.string(),
    "The configured upstream serving the JWK Set (its pools and TLS settings apply).",
  ),
  path: opt(
    t.string({ pattern: "^/", patternMessage: "must start with /" }),
    undefined,
    "Path of the JWK Set on the upstream (with `discovery`, taken from the issuer's jwks_uri instead).",
  ),
  host: opt(
    t.string(),
    undefined,
    "Host header of the fetches (default: the endpoint, or the issuer's host).",
  ),
  algorithms: req(algorithms),
  min_refresh_interval: opt(
    t.duration(),
    "30s",
    "Fewest time between two fetches: a token with an unknown kid refetches at most this often.",
  ),
  default_max_age: opt(t.duration(), "5m", "Cache time when the response has no Cache-Control max-age."),
  timeout: opt(t.duration(), "5s", "Time allowed for one fetch."),
}, { description: "A remote JWK Set, fetched through a configured upstream, cached by its max-age." });

const stringOrList = t.oneOf([t.string(), t.list(t.string(), { minItems: 1 })], {
  normalize: (v: string | string[]) => typeof v === "string" ? [v] : v,
});

/** RFC 6750 scope-token: no space, quote or backslash. */
const scopeToken = t.string({
  pattern: "^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$",
  patternMessage: "not a valid scope token (visible ASCII except quote and backslash)",
});

/** A quoted-string safe value (realm). */
const quotable = t.string({
  pattern: "^[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]*$",
  patternMessage: "visible ASCII only, without quote or backslash",
});

/** `jwt: {...}`. */
export const jwtOptions: Field = opt(
  t.object({
    keys: opt(t.list(keyEntry), undefined, "Keys given inline or in files."),
    jwks: opt(jwks),
    discovery: opt(
      t.bool(),
      false,
      "Find the JWK Set through OIDC discovery: GET <issuer path>/.well-known/openid-configuration on jwks.upstream.",
    ),
    issuer: opt(stringOrList, undefined, "Accepted `iss` values."),
    audience: opt(stringOrList, undefined, "The token's `aud` must contain one of these."),
    leeway: opt(t.duration(), "60s", "Clock skew allowed on exp and nbf."),
    require_exp: opt(t.bool(), true, "Refuse tokens without an `exp` claim."),
    required_claims: opt(t.list(t.string()), [], "Claims every token must carry."),
    scopes: opt(
      t.list(scopeToken),
      [],
      "Scopes every token must grant (`scope`: space-separated, or `scp`: a list); 403 otherwise.",
    ),
    roles: opt(
      t.object({
        claim: req(
          t.string(),
          'Claim holding the roles (a list or space-separated); dotted for nesting: "realm_access.roles".',
        ),
        any_of: req(
          t.list(t.string(), { minItems: 1 }),
          "At least one of these roles is needed; 403 otherwise.",
        ),
      }),
    ),
    from: opt(
      t.object({
        header: opt(headerName, undefined, "Request header (with `scheme`)."),
        cookie: opt(t.string({ pattern: "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$" }), undefined, "Cookie name."),
        query: opt(t.string({ pattern: "^[^&=#\\s]+$" }), undefined, "Query parameter name."),
      }, { minFields: 1, maxFields: 1 }),
      { header: "authorization" },
      "Where the token is: exactly one of header, cookie, query.",
    ),
    scheme: opt(
      t.string(),
      "Bearer",
      'Auth scheme before the token in `from.header` ("" for a bare token).',
    ),
    max_size: opt(t.size(), "8KB", "Longer tokens are refused (401) before any parsing."),
    forward_claims: opt(
      t.map(headerName),
      {},
      "Claim → request header sent upstream (client-sent values replaced; dotted claims for nesting).",
    ),
    strip: opt(t.bool(), false, "Remove the token from the request sent upstream."),
    cache_size: opt(
      t.int({ min: 0 }),
      1000,
      "Verified tokens remembered (exact text; time window and key re-checked on each use); 0: none.",
    ),
    realm: opt(quotable, "loom", "realm of the WWW-Authenticate challenge."),
  }),
  undefined,
  "Verifies a JSON Web Token (RFC 7519) per request; 401/403 with an RFC 6750 challenge otherwise.",
);
