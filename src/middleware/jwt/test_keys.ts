/**
 * Test helpers of the `jwt` and `api_key` middleware (unit and integration
 * tests): key pairs per algorithm, signed tokens, a middleware built from its
 * options through the config loader (defaults and checks as in production).
 *
 * @module
 */
import { exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import type { Middleware } from "../../core/middleware.ts";
import { parseConfig } from "../../config/load.ts";
import {
  builtinMiddleware,
  createMiddleware,
  loadMiddleware,
  type MiddlewareEnv,
  NO_ENV,
} from "../registry.ts";

/** A signing key and what the gateway is configured with. */
export interface TestKey {
  alg: string;
  /** Signs tokens. */
  sign: CryptoKey | Uint8Array;
  /** PEM (SPKI) of the public key; "" for HMAC. */
  pem: string;
  /** Public JWK (with alg, use and kid when given). */
  jwk: Record<string, unknown>;
  /** The HMAC secret (utf8), "" for asymmetric keys. */
  secret: string;
}

/** A fresh key for `alg` (HS*: a random 64-character secret). */
export async function testKey(alg: string, kid?: string): Promise<TestKey> {
  if (alg.startsWith("HS")) {
    const secret = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
    return { alg, sign: new TextEncoder().encode(secret), pem: "", jwk: {}, secret };
  }
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk: Record<string, unknown> = { ...(await exportJWK(publicKey)), alg, use: "sig" };
  if (kid !== undefined) jwk.kid = kid;
  return { alg, sign: privateKey, pem: await exportSPKI(publicKey), jwk, secret: "" };
}

/** A token signed with `key`; `exp` one hour ahead unless `claims` says otherwise (null: none). */
export function signToken(
  key: TestKey,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const body: Record<string, unknown> = { iat: now, exp: now + 3600, ...claims };
  for (const [k, v] of Object.entries(body)) if (v === null) delete body[k];
  return new SignJWT(body as JWTPayload).setProtectedHeader({ alg: key.alg, ...header }).sign(key.sign);
}

/** base64url of `s` (for hand-made tokens). */
export function b64url(s: string | Uint8Array): string {
  const bytes = typeof s === "string" ? new TextEncoder().encode(s) : s;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

// middlewareFrom builds any of them synchronously.
await loadMiddleware(builtinMiddleware());

/** A middleware built from `{name: options}` through the config loader (upstream `idp` defined). */
export function middlewareFrom(name: string, options: unknown, env: MiddlewareEnv = NO_ENV): Middleware {
  const r = parseConfig(
    `listeners: [{name: l, address: ":1", protocol: http}]
upstreams: [{name: idp, endpoints: ["127.0.0.1:2"]}]
middleware:
  - ${name}: ${JSON.stringify(options)}
`,
    "test.yaml",
    {},
  );
  if (!r.ok) throw new Error(r.errors.map((e) => `${e.path}: ${e.message}`).join("\n"));
  return createMiddleware(r.config.middleware[0], env);
}
