/**
 * Tokens already verified, so a client reusing its token (the common case)
 * costs a map lookup instead of a signature check (RS256 in Deno's WebCrypto:
 * some 300 µs of CPU).
 *
 * Keyed by the exact token text: a hit is the same bytes that verified, so
 * signature, `iss`, `aud` and required claims hold as before. What can
 * change is checked on every hit: the time window (`exp`/`nbf` with leeway)
 * and whether the key that verified it is still in use (a JWK Set key rotated
 * out and expired ends its tokens' entries). Only successes are stored;
 * bounded, oldest entry first out.
 *
 * @module
 */
import type { VerifyKey } from "./keys.ts";

interface Entry {
  claims: Record<string, unknown>;
  key: VerifyKey;
  /** Seconds since the epoch: valid while from <= now < until. */
  from: number;
  until: number;
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== "object" || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const x of Object.values(v)) deepFreeze(x);
}

/** A bounded cache of verified tokens. */
export class VerifiedTokens {
  private readonly map = new Map<string, Entry>();

  /** `leeway` in seconds; `usable` tells whether a key may still verify (JWK Set rotation). */
  constructor(
    private readonly max: number,
    private readonly leeway: number,
    private readonly usable: (key: VerifyKey) => boolean,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** The claims of `token` if it verified before and is still within its window and key; else undefined. */
  get(token: string, now = Math.floor(Date.now() / 1000)): Record<string, unknown> | undefined {
    const e = this.map.get(token);
    if (e === undefined) return undefined;
    if (now >= e.from && now < e.until && this.usable(e.key)) return e.claims;
    this.map.delete(token);
    return undefined;
  }

  /** Remembers a verified token (its claims are frozen: every later request shares them). */
  add(token: string, claims: Record<string, unknown>, key: VerifyKey): void {
    if (this.max === 0) return;
    const exp = typeof claims.exp === "number" ? claims.exp + this.leeway : Infinity;
    const nbf = typeof claims.nbf === "number" ? claims.nbf - this.leeway : -Infinity;
    deepFreeze(claims);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(token, { claims, key, from: nbf, until: exp });
  }
}
