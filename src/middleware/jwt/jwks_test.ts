import assert from "node:assert/strict";
import type { CallResponse } from "../../proxy/call.ts";
import { cacheTime, type Fetcher, JwksCache, type JwksSource, MAX_CACHE_MS } from "./jwks.ts";
import type { VerifyKey } from "./keys.ts";
import { testKey } from "./test_keys.ts";
import { setLogLevel } from "../../observability/logger.ts";

setLogLevel("error");

const enc = new TextEncoder();

function response(status: number, body: unknown, cacheControl?: string): CallResponse {
  return {
    status,
    headers: cacheControl === undefined ? [] : [["Cache-Control", cacheControl]],
    body: enc.encode(typeof body === "string" ? body : JSON.stringify(body)),
    trailers: [],
  };
}

/** A fake IdP: serves `doc.keys` at /jwks (with `cc`), discovery at /realm/.well-known/openid-configuration. */
function fakeIdp() {
  const idp = {
    keys: [] as Record<string, unknown>[],
    cc: "max-age=60",
    fail: false,
    issuer: "https://idp.example/realm",
    requests: [] as { path: string; host: string | undefined }[],
    fetcher: ((path, host) => {
      idp.requests.push({ path, host });
      if (idp.fail) return Promise.reject(new Error("connection refused"));
      if (path === "/realm/.well-known/openid-configuration") {
        return Promise.resolve(
          response(200, { issuer: idp.issuer, jwks_uri: "https://keys.example/certs?v=1" }),
        );
      }
      if (path === "/jwks" || path === "/certs?v=1") {
        return Promise.resolve(response(200, { keys: idp.keys }, idp.cc));
      }
      return Promise.resolve(response(404, "no"));
    }) as Fetcher,
  };
  return idp;
}

function source(over: Partial<JwksSource> = {}): JwksSource {
  return {
    upstream: "idp",
    path: "/jwks",
    algorithms: ["RS256", "ES256"],
    minRefreshMs: 10_000,
    defaultMaxAgeMs: 300_000,
    timeoutMs: 1000,
    ...over,
  };
}

/** A cache started on a fake IdP serving one ES256 key, kid "k1"; `clock` is its time. */
async function started(clock: () => number) {
  const idp = fakeIdp();
  idp.keys = [(await testKey("ES256", "k1")).jwk];
  const cache = new JwksCache(source(), idp.fetcher, clock);
  cache.start();
  return { idp, cache };
}

async function find(cache: JwksCache, kid: string | undefined, alg = "ES256"): Promise<VerifyKey[]> {
  const out: VerifyKey[] = [];
  await cache.find(kid, alg, out);
  return out;
}

Deno.test("jwks: cache time from Cache-Control, bounded", () => {
  const r = (cc?: string) => cacheTime(response(200, "", cc), 10_000, 300_000);
  assert.equal(r(), 300_000);
  assert.equal(r("public, max-age=120"), 120_000);
  assert.equal(r('max-age="90"'), 90_000);
  assert.equal(r("max-age=1"), 10_000, "at least min_refresh_interval");
  assert.equal(r("no-store"), 10_000);
  assert.equal(r("no-cache, max-age=600"), 10_000);
  assert.equal(r("max-age=99999999"), MAX_CACHE_MS);
});

Deno.test("jwks: unknown kids refetch at most once per interval, concurrent ones share the fetch", async () => {
  let now = 1_000_000;
  const { cache } = await started(() => now);
  assert.equal((await find(cache, "k1")).length, 1);
  assert.equal(cache.fetches, 1);
  // Within the interval: a flood of unknown kids fetches nothing.
  const flood = await Promise.all(Array.from({ length: 200 }, (_, i) => find(cache, `nope-${i}`)));
  assert.ok(flood.every((l) => l.length === 0));
  assert.equal(cache.fetches, 1);
  // After it: one fetch for all of them together.
  now += 10_000;
  await Promise.all(Array.from({ length: 200 }, (_, i) => find(cache, `nope-${i}`)));
  assert.equal(cache.fetches, 2);
  // The algorithm must be one the key was imported for.
  assert.equal((await find(cache, "k1", "RS256")).length, 0);
});

Deno.test("jwks: rotation keeps the old key until its expiry; a new kid is fetched", async () => {
  let now = 1_000_000;
  const idp = fakeIdp();
  const k1 = await testKey("ES256", "k1");
  const k2 = await testKey("ES256", "k2");
  idp.keys = [k1.jwk];
  idp.cc = "max-age=60";
  const cache = new JwksCache(source(), idp.fetcher, () => now);
  cache.start();
  assert.equal((await find(cache, "k1")).length, 1);
  idp.keys = [k2.jwk];
  now += 20_000;
  assert.equal((await find(cache, "k2")).length, 1, "unknown kid → refetch");
  assert.equal(cache.fetches, 2);
  assert.equal((await find(cache, "k1")).length, 1, "rotated out, not yet expired");
  now += 40_001; // k1's expiry (first fetch + 60 s) passed
  assert.equal((await find(cache, "k1")).length, 0, "rotated out and expired");
  assert.equal((await find(cache, "k2")).length, 1);
});

Deno.test("jwks: an expired set is refreshed in the background; a failing fetch keeps the keys", async () => {
  let now = 1_000_000;
  const { idp, cache } = await started(() => now);
  await find(cache, "k1");
  now += 61_000;
  idp.fail = true;
  assert.equal((await find(cache, "k1")).length, 1, "served from the stale set");
  assert.equal(cache.fetches, 2);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal((await find(cache, "k1")).length, 1, "still there after the failed refresh");
  assert.equal(cache.fetches, 2, "no retry within the interval");
});

Deno.test("jwks: nothing fetched yet → not available; keys of unsupported type or use are skipped", async () => {
  const idp = fakeIdp();
  idp.fail = true;
  const cache = new JwksCache(source(), idp.fetcher);
  cache.start();
  assert.equal((await find(cache, "k1")).length, 0);
  assert.equal(cache.available, false);
  idp.fail = false;
  const rsa = await testKey("RS256", "r");
  const ed = await testKey("EdDSA", "e");
  idp.keys = [{ ...rsa.jwk, use: "enc" }, ed.jwk, { kty: "oct", k: "c2VjcmV0", kid: "s" }, { kty: "weird" }];
  const later = new JwksCache(source(), idp.fetcher);
  later.start();
  assert.equal((await find(later, "r", "RS256")).length, 0);
  assert.equal((await find(later, "e", "EdDSA")).length, 0);
  assert.equal((await find(later, "s", "HS256")).length, 0);
  assert.equal(later.available, true);
});

Deno.test("jwks: OIDC discovery finds jwks_uri under the issuer's path; a foreign issuer is refused", async () => {
  const idp = fakeIdp();
  const k1 = await testKey("ES256", "k1");
  idp.keys = [k1.jwk];
  const cache = new JwksCache(source({ path: undefined, issuer: idp.issuer }), idp.fetcher);
  cache.start();
  assert.equal((await find(cache, "k1")).length, 1);
  assert.deepEqual(idp.requests, [
    { path: "/realm/.well-known/openid-configuration", host: "idp.example" },
    { path: "/certs?v=1", host: "keys.example" },
  ]);
  const other = fakeIdp();
  other.issuer = "https://evil.example/realm";
  other.keys = [k1.jwk];
  const refused = new JwksCache(
    source({ path: undefined, issuer: "https://idp.example/realm" }),
    other.fetcher,
  );
  refused.start();
  assert.equal((await find(refused, "k1")).length, 0);
  assert.equal(refused.available, false);
});
