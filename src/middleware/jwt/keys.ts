/**
 * Verification keys of the `jwt` middleware: parsing (PEM, JWK, secret,
 * file: synchronous, so a bad key fails the build with a message), which
 * algorithms a key may verify (its type decides, never a token), importing
 * (once per key and algorithm, at build or JWK Set fetch) and the lookup by
 * `kid` and `alg`.
 *
 * A key's algorithms are the configured ones its type allows: HS* only for
 * secrets (`oct`), RS and PS for RSA keys of 2048 bits or more, ES256/384/512
 * for P-256/384/521, EdDSA/Ed25519 for Ed25519. An RSA key can therefore
 * never verify an HS256 token (algorithm confusion), whatever the token says.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createPublicKey } from "node:crypto";
import { importJWK } from "jose";
import { looksLikePublicKey, pemProblem } from "../../config/middleware/jwt.ts";

/** A public JWK (or an `oct` secret), as parsed; only the members the import needs. */
export interface KeyJwk {
  kty: string;
  crv?: string;
  n?: string;
  e?: string;
  x?: string;
  y?: string;
  k?: string;
  kid?: string;
  alg?: string;
  use?: string;
}

/** One key, imported for each algorithm it may verify. */
export interface VerifyKey {
  readonly kid: string | undefined;
  /** CryptoKeys by algorithm. */
  readonly byAlg: ReadonlyMap<string, CryptoKey>;
  /** Identity across JWK Set fetches (kid and public members). */
  readonly id: string;
}

const HMAC_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 };
const EC_ALG: Record<string, string> = { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };
/** Bits of an RSA modulus given in base64url. */
function rsaBits(n: string): number {
  const b = Buffer.from(n, "base64url");
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  return i === b.length ? 0 : (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]));
}

/** Why `jwk` (given the configured `allowed` algorithms) cannot verify `alg`, or undefined when it can. */
function algProblem(jwk: KeyJwk, alg: string): string | undefined {
  if (jwk.alg !== undefined && jwk.alg !== alg) return `the key is for ${jwk.alg} only`;
  if (alg.startsWith("HS")) {
    if (jwk.kty !== "oct") return `${alg} needs an HMAC secret, not a ${jwk.kty} key`;
    const bytes = Buffer.from(jwk.k ?? "", "base64url").length;
    return bytes < HMAC_BYTES[alg] ? `${alg} needs a secret of at least ${HMAC_BYTES[alg]} bytes` : undefined;
  }
  if (alg.startsWith("RS") || alg.startsWith("PS")) {
    if (jwk.kty !== "RSA") return `${alg} needs an RSA key, not ${jwk.kty}`;
    return rsaBits(jwk.n ?? "") < 2048 ? `${alg} needs an RSA key of at least 2048 bits` : undefined;
  }
  if (alg.startsWith("ES")) {
    if (jwk.kty !== "EC") return `${alg} needs an EC key, not ${jwk.kty}`;
    return EC_ALG[jwk.crv ?? ""] === alg ? undefined : `${alg} needs curve of ${alg}, not ${jwk.crv}`;
  }
  // EdDSA, Ed25519
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") return `${alg} needs an Ed25519 key`;
  return undefined;
}

/**
 * The algorithms of `allowed` that `jwk` may verify. With `strict`, any
 * allowed algorithm the key cannot verify is an error (inline keys: a config
 * mistake); otherwise those are skipped (JWK Set members).
 */
export function keyAlgorithms(jwk: KeyJwk, allowed: readonly string[], strict: boolean): string[] {
  if (jwk.use !== undefined && jwk.use !== "sig") {
    if (strict) throw new Error(`the key's "use" is "${jwk.use}", not "sig"`);
    return [];
  }
  const out: string[] = [];
  for (const alg of allowed) {
    const problem = algProblem(jwk, alg);
    if (problem === undefined) out.push(alg);
    else if (strict) throw new Error(`algorithm ${alg} cannot use this key: ${problem}`);
  }
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** A JWK object (inline or from a JWK Set) checked and reduced to its public members. Throws. */
export function parseJwk(o: Record<string, unknown>): KeyJwk {
  const kty = str(o.kty);
  const meta = { kid: str(o.kid), alg: str(o.alg), use: str(o.use) };
  if (kty === "oct") {
    const k = str(o.k);
    if (k === undefined || !/^[A-Za-z0-9_-]+$/.test(k)) throw new Error('an "oct" JWK needs "k" (base64url)');
    return { kty, k, ...meta };
  }
  if (kty !== "RSA" && kty !== "EC" && kty !== "OKP") {
    throw new Error(`unsupported JWK "kty" ${JSON.stringify(o.kty)} (RSA, EC, OKP or oct)`);
  }
  if (o.d !== undefined || o.p !== undefined) throw new Error("a private JWK: configure the public key");
  let pub: Record<string, unknown>;
  try {
    pub = createPublicKey({ key: o as never, format: "jwk" }).export({ format: "jwk" }) as Record<
      string,
      unknown
    >;
  } catch (e) {
    throw new Error(`invalid ${kty} JWK: ${(e as Error).message}`);
  }
  return { kty, crv: str(pub.crv), n: str(pub.n), e: str(pub.e), x: str(pub.x), y: str(pub.y), ...meta };
}

/** A PEM public key or certificate as a JWK. Throws. */
export function parsePem(pem: string): KeyJwk {
  const problem = pemProblem(pem);
  if (problem !== undefined) throw new Error(problem);
  let jwk: Record<string, unknown>;
  try {
    jwk = createPublicKey(pem).export({ format: "jwk" }) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`unsupported key: ${(e as Error).message}`);
  }
  return parseJwk(jwk);
}

/** An HMAC secret as an `oct` JWK. Throws on a secret that is really a public key. */
export function secretJwk(secret: string, encoding: "utf8" | "base64" | "base64url"): KeyJwk {
  if (looksLikePublicKey(secret)) throw new Error("a public key must not be used as an HMAC secret");
  const bytes = encoding === "utf8" ? Buffer.from(secret, "utf8") : Buffer.from(secret, encoding);
  if (bytes.length === 0) throw new Error("empty secret");
  return { kty: "oct", k: bytes.toString("base64url") };
}

/** The keys in a file: a PEM, a JWK or a JWK Set (JSON). Throws. */
export function parseKeyFile(path: string): KeyJwk[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  const s = text.trim();
  if (!s.startsWith("{")) return [parsePem(s)];
  let doc: unknown;
  try {
    doc = JSON.parse(s);
  } catch {
    throw new Error(`${path}: not a PEM and not valid JSON`);
  }
  const o = doc as Record<string, unknown>;
  if (Array.isArray(o.keys)) return o.keys.map((k) => parseJwk(k as Record<string, unknown>));
  return [parseJwk(o)];
}

/** Imports `jwk` for each of `algs` (at least one). */
export async function importKey(jwk: KeyJwk, algs: readonly string[], kid = jwk.kid): Promise<VerifyKey> {
  const byAlg = new Map<string, CryptoKey>();
  for (const alg of algs) {
    if (alg.startsWith("HS")) {
      const raw = Buffer.from(jwk.k!, "base64url");
      byAlg.set(
        alg,
        await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: `SHA-${alg.slice(2)}` }, false, [
          "verify",
        ]),
      );
    } else {
      const { kty, crv, n, e, x, y } = jwk;
      byAlg.set(alg, await importJWK({ kty, crv, n, e, x, y }, alg) as CryptoKey);
    }
  }
  // The id of a secret must not carry the secret: hash it.
  const material = jwk.kty === "oct"
    ? Buffer.from(await crypto.subtle.digest("SHA-256", Buffer.from(jwk.k!, "base64url"))).toString("hex")
    : `${jwk.n ?? ""}.${jwk.x ?? ""}.${jwk.y ?? ""}`;
  return { kid, byAlg, id: `${kid ?? ""}|${jwk.kty}|${material}` };
}

/** Keys looked up by `kid` and `alg`. */
export class KeyIndex {
  private readonly byKid = new Map<string, VerifyKey[]>();
  private readonly noKid: VerifyKey[] = [];
  private readonly all: ReadonlySet<VerifyKey>;

  constructor(readonly keys: readonly VerifyKey[]) {
    this.all = new Set(keys);
    for (const k of keys) {
      if (k.kid === undefined) this.noKid.push(k);
      else {
        const list = this.byKid.get(k.kid);
        if (list === undefined) this.byKid.set(k.kid, [k]);
        else list.push(k);
      }
    }
  }

  get size(): number {
    return this.keys.length;
  }

  has(key: VerifyKey): boolean {
    return this.all.has(key);
  }

  /**
   * The keys that may verify a token with header `kid` and `alg`: with a kid,
   * the keys of that kid and those without one; without, every key. Only keys
   * imported for `alg` count.
   */
  find(kid: string | undefined, alg: string, out: VerifyKey[]): void {
    const pick = (list: readonly VerifyKey[]) => {
      for (const k of list) if (k.byAlg.has(alg)) out.push(k);
    };
    if (kid === undefined) pick(this.keys);
    else {
      const list = this.byKid.get(kid);
      if (list !== undefined) pick(list);
      pick(this.noKid);
    }
  }
}
