/**
 * A remote JWK Set, fetched through a configured upstream (`env.call`: its
 * balancer, pools and TLS settings), optionally found by OIDC discovery.
 *
 * - Cached for the response's `Cache-Control: max-age` (no-store/no-cache and
 *   values below `min_refresh_interval` count as that interval; above 24 h
 *   as 24 h; absent: `default_max_age`). Once expired, the next request
 *   starts a refetch in the background and is served with the keys in hand.
 * - A token whose kid is unknown refetches at once, but only if the last
 *   fetch started at least `min_refresh_interval` ago; concurrent requests
 *   wait for the one fetch in flight. A flood of made-up kids therefore costs
 *   one fetch per interval.
 * - Rotation: a key that disappears from the set stays usable until the
 *   expiry it had when last fetched; keys of the latest set stay usable while
 *   a refetch fails (the IdP being down does not lock everybody out).
 * - Every key is imported once, when its set is fetched.
 *
 * @module
 */
import type { CallResponse } from "../../proxy/call.ts";
import { logger } from "../../observability/logger.ts";
import { importKey, keyAlgorithms, KeyIndex, parseJwk, type VerifyKey } from "./keys.ts";

/** Where and how to fetch the set. */
export interface JwksSource {
  upstream: string;
  /** Path of the set; with `issuer` set (discovery) taken from the discovery document. */
  path?: string;
  host?: string;
  /** OIDC discovery: the issuer whose `/.well-known/openid-configuration` names the set. */
  issuer?: string;
  algorithms: readonly string[];
  minRefreshMs: number;
  defaultMaxAgeMs: number;
  timeoutMs: number;
}

/** Sends a GET to the source's upstream. */
export type Fetcher = (path: string, host: string | undefined, timeoutMs: number) => Promise<CallResponse>;

/** Longest time a fetched set (or discovery document) is trusted. */
export const MAX_CACHE_MS = 24 * 3600_000;
/** Largest JWK Set or discovery document accepted. */
const MAX_DOC_BYTES = 1 << 20;
/** Most keys taken from one set. */
const MAX_KEYS = 100;

interface Entry {
  key: VerifyKey;
  /** Until when a key no longer in the latest set may still be used. */
  expiresAt: number;
  /** In the latest set. */
  current: boolean;
}

const dec = new TextDecoder();

/** The cache time of a response: its max-age bounded by [minMs, MAX_CACHE_MS], else `defaultMs`. */
export function cacheTime(res: CallResponse, minMs: number, defaultMs: number): number {
  let cc = "";
  for (const [k, v] of res.headers) if (k.toLowerCase() === "cache-control") cc += (cc ? "," : "") + v;
  let ms = defaultMs;
  if (/(?:^|[\s,])(?:no-store|no-cache)(?:$|[\s,;=])/i.test(cc)) ms = 0;
  else {
    const m = /(?:^|[\s,])max-age\s*=\s*"?(\d+)"?/i.exec(cc);
    if (m !== null) ms = Number(m[1]) * 1000;
  }
  return Math.min(Math.max(ms, minMs), MAX_CACHE_MS);
}

function jsonBody(res: CallResponse, what: string): Record<string, unknown> {
  if (res.status !== 200) throw new Error(`${what}: status ${res.status}`);
  if (res.body.length > MAX_DOC_BYTES) throw new Error(`${what}: larger than ${MAX_DOC_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(dec.decode(res.body));
  } catch {
    throw new Error(`${what}: not JSON`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${what}: not a JSON object`);
  }
  return doc as Record<string, unknown>;
}

/** The JWK Set of one source: fetched, cached, rotated. */
export class JwksCache {
  /** Fetches started (tests, metrics). */
  fetches = 0;
  private entries: Entry[] = [];
  private byKey = new Map<VerifyKey, Entry>();
  private index = new KeyIndex([]);
  private loaded = false;
  private setExpiresAt = 0;
  private lastAttempt = -Infinity;
  private inflight: Promise<void> | null = null;
  private jwksPath: string | undefined;
  private jwksHost: string | undefined;
  private discoveryExpiresAt = 0;

  constructor(
    private readonly src: JwksSource,
    private readonly fetch: Fetcher,
    private readonly now: () => number = Date.now,
  ) {
    this.jwksPath = src.path;
    this.jwksHost = src.host;
  }

  /** Whether a set was ever fetched (else a request cannot be verified: 503, not 401). */
  get available(): boolean {
    return this.loaded;
  }

  /** Starts the first fetch (at build: the first request then finds it in flight or done). */
  start(): void {
    this.refresh();
  }

  /**
   * Adds to `out` the keys for `kid`/`alg`. May refetch (see the module doc):
   * returns a promise only when the caller must wait for a fetch.
   */
  find(kid: string | undefined, alg: string, out: VerifyKey[]): void | Promise<void> {
    const now = this.now();
    if (this.loaded && now >= this.setExpiresAt && this.inflight === null && this.mayFetch(now)) {
      this.refresh();
    }
    const before = out.length;
    this.lookup(kid, alg, now, out);
    if (out.length > before) return;
    if (this.inflight !== null) return this.inflight.then(() => this.lookup(kid, alg, this.now(), out));
    if (!this.mayFetch(now)) return;
    return this.refresh().then(() => this.lookup(kid, alg, this.now(), out));
  }

  /** Whether `key` (found earlier) may still verify: in the latest set, or rotated out but not expired. */
  usable(key: VerifyKey, now = this.now()): boolean {
    const e = this.byKey.get(key);
    return e !== undefined && (e.current || e.expiresAt > now);
  }

  private mayFetch(now: number): boolean {
    return now - this.lastAttempt >= this.src.minRefreshMs;
  }

  private lookup(kid: string | undefined, alg: string, now: number, out: VerifyKey[]): void {
    const before = out.length;
    this.index.find(kid, alg, out);
    // Keys rotated out are dropped lazily: filter the expired ones out of the answer.
    if (this.entries.some((e) => !e.current && e.expiresAt <= now)) {
      const dead = new Set(this.entries.filter((e) => !e.current && e.expiresAt <= now).map((e) => e.key));
      let w = before;
      for (let r = before; r < out.length; r++) if (!dead.has(out[r])) out[w++] = out[r];
      out.length = w;
    }
  }

  /** One fetch (discovery first when due); never rejects. */
  private refresh(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    this.lastAttempt = this.now();
    this.fetches++;
    const p = this.load().catch((e) => {
      // Keep what we have; the next attempt waits for min_refresh_interval.
      this.discoveryExpiresAt = 0;
      logger.warn("jwt: JWK Set fetch failed; keeping the keys in hand", {
        upstream: this.src.upstream,
        path: this.jwksPath ?? "(discovery)",
        error: (e as Error).message,
        keys: this.index.size,
      });
    }).finally(() => {
      this.inflight = null;
    });
    this.inflight = p;
    return p;
  }

  private async load(): Promise<void> {
    const src = this.src;
    if (src.issuer !== undefined && (this.jwksPath === undefined || this.now() >= this.discoveryExpiresAt)) {
      await this.discover(src.issuer);
    }
    const res = await this.fetch(this.jwksPath!, this.jwksHost, src.timeoutMs);
    const doc = jsonBody(res, "JWK Set");
    if (!Array.isArray(doc.keys)) throw new Error('JWK Set: no "keys" list');
    const ttl = cacheTime(res, src.minRefreshMs, src.defaultMaxAgeMs);
    const fresh: VerifyKey[] = [];
    for (const raw of doc.keys.slice(0, MAX_KEYS)) {
      try {
        const jwk = parseJwk(raw as Record<string, unknown>);
        const algs = keyAlgorithms(jwk, src.algorithms, false);
        if (algs.length > 0) fresh.push(await importKey(jwk, algs));
      } catch (e) {
        logger.debug("jwt: JWK Set member skipped", { upstream: src.upstream, error: (e as Error).message });
      }
    }
    this.install(fresh, this.now(), ttl);
  }

  /** Makes `fresh` the latest set; keys rotated out keep their expiry. */
  private install(fresh: VerifyKey[], now: number, ttl: number): void {
    const expiresAt = now + ttl;
    const ids = new Set(fresh.map((k) => k.id));
    const kept = this.entries.filter((e) => !ids.has(e.key.id) && (e.current || e.expiresAt > now))
      .map((e) => ({ key: e.key, expiresAt: e.expiresAt, current: false }))
      .filter((e) => e.expiresAt > now);
    this.entries = [...fresh.map((key) => ({ key, expiresAt, current: true })), ...kept];
    this.index = new KeyIndex(this.entries.map((e) => e.key));
    this.byKey = new Map(this.entries.map((e) => [e.key, e]));
    this.setExpiresAt = expiresAt;
    this.loaded = true;
  }

  private async discover(issuer: string): Promise<void> {
    const url = new URL(issuer);
    const path = url.pathname.replace(/\/+$/, "") + "/.well-known/openid-configuration";
    const res = await this.fetch(path, this.src.host ?? url.host, this.src.timeoutMs);
    const doc = jsonBody(res, "OIDC discovery");
    if (doc.issuer !== issuer) {
      throw new Error(`OIDC discovery: issuer ${JSON.stringify(doc.issuer)} is not the configured one`);
    }
    if (typeof doc.jwks_uri !== "string") throw new Error("OIDC discovery: no jwks_uri");
    let jwks: URL;
    try {
      jwks = new URL(doc.jwks_uri);
    } catch {
      throw new Error("OIDC discovery: jwks_uri is not a URL");
    }
    this.jwksPath = jwks.pathname + jwks.search;
    this.jwksHost = this.src.host ?? jwks.host;
    this.discoveryExpiresAt = this.now() + cacheTime(res, this.src.minRefreshMs, this.src.defaultMaxAgeMs);
  }
}
