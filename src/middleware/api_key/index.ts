/**
 * `api_key`: requires a known API key in a request header (default
 * `x-api-key`) or a query parameter.
 *
 * ```yaml
 * middleware:
 *   - api_key:
 *       keys:
 *         - { name: billing, key: "${BILLING_KEY}", metadata: { x-plan: gold } }
 *         - { name: legacy, key: "sha256:9f86d0...", expires: 2027-01-31T00:00:00Z }
 *       file: /etc/loom/api_keys.yaml   # more entries, re-read on every reload
 *       query: api_key                  # also accepted as ?api_key=
 * ```
 *
 * - Keys exist in memory only as SHA-256 hashes: plain keys are hashed when
 *   the config (or `file`) is loaded. A presented key is hashed, found by its
 *   hash and confirmed with a timing-safe compare ({@link sameHash}); lookup timing depends only
 *   on the hash, which reveals nothing usable about any stored key.
 * - Missing, unknown, expired or ambiguous (two keys sent) → 401 (as Kong:
 *   an expired key is not an authenticated caller), with distinct rejection
 *   reasons `api_key/missing|invalid|expired|ambiguous` in metrics and the
 *   access log. No answer or log line contains a key.
 * - Upstream gets the key's name in `name_header` (default `x-consumer`) and
 *   its `metadata` as headers; client-sent values of every such header name
 *   are dropped first. The key itself is removed (`strip`, default true); a
 *   key from the query is masked in the access log's path.
 *
 * @module
 */
import { hash as digest } from "node:crypto";
import { parse as parseYaml } from "yaml";
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import { expiryProblem, hashApiKey, HASHED_KEY } from "../../config/middleware/api_key.ts";
import { reject } from "../reject.ts";
import { headerValues, MASKED, queryValues, rewriteQueryParam } from "../credentials.ts";

/** One key as normalised by the config loader (`key` is `sha256:<hex>`). */
export interface ApiKeyEntry {
  key: string;
  name?: string;
  metadata?: Record<string, string>;
  expires?: string;
}

/** The `api_key` middleware's options. */
export interface ApiKeyOptions {
  header: string;
  query?: string;
  keys: ApiKeyEntry[];
  file?: string;
  name_header: string;
  strip: boolean;
}

/** Key in `ctx.vars` of the accepted key's name ("" when it has none). */
export const API_KEY_CONSUMER_VAR = "loom.api_key.consumer";
/** The accepted key's record, for this middleware's upstream phase. */
const ENTRY_VAR = "loom.api_key.entry";

/** The accepted key's metadata value `name` (lower-case header name), or undefined (rate_limit classes). */
export function apiKeyMetadata(ctx: RequestContext, name: string): string | undefined {
  const stored = ctx.vars.get(ENTRY_VAR) as StoredKey | undefined;
  if (stored !== undefined) { for (const [k, v] of stored.headers) if (k === name) return v; }
  return undefined;
}

/** A key ready for lookup. */
interface StoredKey {
  /** SHA-256, 64 lower-case hex digits. */
  hash: string;
  name: string;
  /** Epoch ms; Infinity when it never expires. */
  expiresAt: number;
  /** Headers sent upstream, lower-case names. */
  headers: [string, string][];
}

/**
 * Timing-safe equality of two SHA-256 hex digests: every character is
 * compared whatever the first difference (node's timingSafeEqual does the same
 * on bytes, at ten times the cost of this loop through the compatibility layer).
 */
export function sameHash(a: string, b: string): boolean {
  if (a.length !== 64 || b.length !== 64) return false;
  let diff = 0;
  for (let i = 0; i < 64; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The entries of a key file (a list, or `{keys: [...]}`), checked like config entries. Throws without echoing keys. */
export function readKeyFile(path: string): ApiKeyEntry[] {
  let doc: unknown;
  try {
    doc = parseYaml(Deno.readTextFileSync(path));
  } catch (e) {
    throw new Error(
      `api_key: file ${path}: ${e instanceof Deno.errors.NotFound ? "not found" : "not readable YAML/JSON"}`,
    );
  }
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) {
    throw new Error(`api_key: file ${path}: expected a list of keys (or keys: [...])`);
  }
  return list.map((raw, i) => {
    const where = `api_key: file ${path}: entry ${i}`;
    const e = raw as Record<string, unknown>;
    if (e === null || typeof e !== "object") throw new Error(`${where}: expected a mapping`);
    for (const k of Object.keys(e)) {
      if (!["key", "name", "metadata", "expires"].includes(k)) {
        throw new Error(`${where}: unknown field "${k}"`);
      }
    }
    const key = typeof e.key === "number" ? String(e.key) : e.key;
    if (typeof key !== "string" || key === "") throw new Error(`${where}: needs key (a non-empty string)`);
    if (e.name !== undefined && typeof e.name !== "string") {
      throw new Error(`${where}: name must be a string`);
    }
    let expires: string | undefined;
    if (e.expires !== undefined) {
      expires = e.expires instanceof Date ? e.expires.toISOString() : String(e.expires);
      if (expiryProblem(expires) !== undefined) throw new Error(`${where}: expires is not a date`);
    }
    const metadata: Record<string, string> = {};
    if (e.metadata !== undefined) {
      if (e.metadata === null || typeof e.metadata !== "object") {
        throw new Error(`${where}: metadata must be a mapping`);
      }
      for (const [k, v] of Object.entries(e.metadata)) {
        const s = String(v);
        if (!HEADER_NAME.test(k) || /[\r\n\0]/.test(s)) {
          throw new Error(`${where}: metadata ${JSON.stringify(k)} invalid`);
        }
        metadata[k] = s;
      }
    }
    return { key: hashApiKey(key), name: e.name as string | undefined, metadata, expires };
  });
}

/** The stored keys of `o` (config entries, then the file's), by hash. Throws on a duplicate key. */
function storedKeys(o: ApiKeyOptions): Map<string, StoredKey> {
  const entries: [string, ApiKeyEntry][] = o.keys.map((e, i) => [`keys[${i}]`, e]);
  if (o.file !== undefined) readKeyFile(o.file).forEach((e, i) => entries.push([`file entry ${i}`, e]));
  const byHash = new Map<string, StoredKey>();
  const where = new Map<string, string>();
  for (const [at, e] of entries) {
    if (!HASHED_KEY.test(e.key)) throw new Error(`api_key: ${at}: key not normalised`);
    const hex = e.key.slice("sha256:".length);
    const prev = where.get(hex);
    if (prev !== undefined) throw new Error(`api_key: ${at} is the same key as ${prev}`);
    where.set(hex, at);
    const headers = Object.entries(e.metadata ?? {}).map(([k, v]) =>
      [k.toLowerCase(), v] as [string, string]
    );
    if (o.name_header !== "" && e.name !== undefined) headers.unshift([o.name_header.toLowerCase(), e.name]);
    byHash.set(hex, {
      hash: hex,
      name: e.name ?? "",
      expiresAt: e.expires === undefined ? Infinity : Date.parse(e.expires),
      headers,
    });
  }
  return byHash;
}

/** The middleware for `o`. Throws on an unreadable key file or a duplicate key. */
export function apiKey(o: ApiKeyOptions): Middleware {
  const byHash = storedKeys(o);
  if (o.header === "" && o.query === undefined) throw new Error("api_key: needs header or query");
  const header = o.header.toLowerCase();
  const query = o.query;
  // Every header name a key forwards: dropped from every request first, so a client cannot supply them.
  const forwarded = new Set<string>();
  if (o.name_header !== "") forwarded.add(o.name_header.toLowerCase());
  for (const k of byHash.values()) for (const [h] of k.headers) forwarded.add(h);
  const dropped = [...forwarded];

  /** The key sent, undefined when none, null when ambiguous or malformed. */
  function presented(ctx: RequestContext): string | undefined | null {
    let found: string | undefined;
    if (header !== "") {
      const v = headerValues(ctx.headers, header);
      if (v.length > 1) return null;
      found = v[0];
    }
    if (query !== undefined && ctx.query !== "") {
      const v = queryValues(ctx.query, query);
      if (v === null || v.length > 1 || (v.length === 1 && found !== undefined)) return null;
      if (v.length === 1) found = v[0];
    }
    return found;
  }

  return {
    name: "api_key",
    request: (ctx, next) => {
      const key = presented(ctx);
      // Whatever the outcome, the access log must not show a key (a refused one may be real, e.g. expired).
      if (query !== undefined && ctx.query !== "") ctx.target = rewriteQueryParam(ctx.target, query, MASKED);
      if (key === undefined) return reject(ctx, "api_key", "missing", 401, "API key required");
      if (key === null) {
        return reject(ctx, "api_key", "ambiguous", 401, "more than one API key, or a malformed one");
      }
      const hash = digest("sha256", key, "hex");
      const stored = byHash.get(hash);
      if (stored === undefined || !sameHash(stored.hash, hash)) {
        return reject(ctx, "api_key", "invalid", 401, "invalid API key");
      }
      if (Date.now() >= stored.expiresAt) return reject(ctx, "api_key", "expired", 401, "API key expired");
      ctx.vars.set(API_KEY_CONSUMER_VAR, stored.name);
      ctx.vars.set(ENTRY_VAR, stored);
      return next();
    },
    upstreamRequest: (ctx, head) => {
      const h = head.headers;
      for (const name of dropped) h.delete(name);
      const stored = ctx.vars.get(ENTRY_VAR) as StoredKey | undefined;
      if (stored !== undefined) { for (const [k, v] of stored.headers) h.append(k, v); }
      if (o.strip) {
        if (header !== "") h.delete(header);
        if (query !== undefined) head.target = rewriteQueryParam(head.target, query, null);
      }
    },
  };
}
