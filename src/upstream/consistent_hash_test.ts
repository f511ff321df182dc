import assert from "node:assert/strict";
import type { ConsistentHashConfig } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import { createBalancer } from "./selection.ts";
import { murmur3 } from "./selection/hash.ts";
import { endpointsOf, mulberry32, request, upstreamConfig } from "./testutil.ts";

const ALGORITHMS: ConsistentHashConfig["algorithm"][] = ["maglev", "ring"];

function balancer(weights: number[], hash: Partial<ConsistentHashConfig>) {
  const cfg = upstreamConfig("consistent_hash", weights, hash);
  const eps = endpointsOf(cfg);
  return { cfg, eps, lb: createBalancer(cfg, eps) };
}

function randomKeys(count: number, seed: number): string[] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => `user-${Math.floor(rand() * 2 ** 32).toString(36)}`);
}

/** Address each key maps to, keyed by header. */
function assign(weights: number[], hash: Partial<ConsistentHashConfig>, keys: string[], drop = -1): string[] {
  const cfg = upstreamConfig("consistent_hash", weights, { hash_key: "X-User-ID", ...hash });
  if (drop >= 0) cfg.endpoints.splice(drop, 1);
  const lb = createBalancer(cfg, endpointsOf(cfg));
  return keys.map((k) => lb.pick(request("203.0.113.9", { "x-user-id": k }))!.address);
}

Deno.test("murmur3: deterministic, range-aware, spreads similar keys", () => {
  assert.equal(murmur3("hello"), murmur3("xhellox", 1, 6));
  assert.notEqual(murmur3("user-1"), murmur3("user-2"));
  assert.notEqual(murmur3("a", 0, 1, 0), murmur3("a", 0, 1, 1));
  assert.ok(murmur3("\uffff\uffff") >= 0);
});

for (const algorithm of ALGORITHMS) {
  for (const n of [5, 10]) {
    Deno.test(`${algorithm}: removing one of ${n} endpoints moves ~1/${n} of keys, balance holds`, () => {
      const keys = randomKeys(10_000, n);
      const weights = Array<number>(n).fill(1);
      const before = assign(weights, { algorithm }, keys);
      // Balance: each endpoint within ±25% (ring) / ±10% (maglev) of its fair share.
      const counts = new Map<string, number>();
      for (const a of before) counts.set(a, (counts.get(a) ?? 0) + 1);
      assert.equal(counts.size, n);
      const fair = keys.length / n;
      const tol = algorithm === "maglev" ? 0.1 : 0.25;
      for (const c of counts.values()) assert.ok(Math.abs(c / fair - 1) < tol, `${[...counts.values()]}`);

      const removed = `10.0.0.${n}:80`;
      const after = assign(weights, { algorithm }, keys, n - 1);
      let moved = 0;
      let survivorsMoved = 0;
      for (let i = 0; i < keys.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        if (before[i] !== removed) survivorsMoved++;
      }
      const fraction = moved / keys.length;
      assert.ok(fraction >= (1 / n) * 0.7 && fraction <= (1 / n) * 1.3, `moved ${fraction}`);
      // Keys on surviving endpoints stay: exactly for the ring, almost for maglev.
      const limit = algorithm === "ring" ? 0 : 0.01 * keys.length;
      assert.ok(survivorsMoved <= limit, `${survivorsMoved} keys left a surviving endpoint`);
    });
  }

  Deno.test(`${algorithm}: same key → same endpoint, independent of config order`, () => {
    const keys = randomKeys(500, 42);
    const a = assign([1, 1, 1, 1], { algorithm }, keys);
    assert.deepEqual(assign([1, 1, 1, 1], { algorithm }, keys), a);
    const cfg = upstreamConfig("consistent_hash", [1, 1, 1, 1], { algorithm, hash_key: "X-User-ID" });
    cfg.endpoints.reverse();
    const lb = createBalancer(cfg, endpointsOf(cfg));
    assert.deepEqual(keys.map((k) => lb.pick(request("x", { "x-user-id": k }))!.address), a);
  });

  Deno.test(`${algorithm}: weights shift the share`, () => {
    const keys = randomKeys(20_000, 9);
    const share = new Map<string, number>();
    for (const a of assign([2, 1, 1], { algorithm }, keys)) {
      share.set(a, (share.get(a) ?? 0) + 1 / keys.length);
    }
    assert.ok(Math.abs(share.get("10.0.0.1:80")! - 0.5) < 0.05, `${[...share.values()]}`);
  });

  Deno.test(`${algorithm}: an unavailable owner's keys spread deterministically over the others`, () => {
    const { eps, lb } = balancer([1, 1, 1, 1, 1], { algorithm, hash_key: "X-User-ID" });
    const keys = randomKeys(5000, 5);
    const pick = (k: string, exclude?: Endpoint) => lb.pick(request("x", { "x-user-id": k }), exclude)!;
    const owners = keys.map((k) => pick(k));
    eps[0].healthy = false;
    const moved = new Map<string, number>();
    keys.forEach((k, i) => {
      const ep = pick(k);
      assert.notEqual(ep, eps[0]);
      if (owners[i] !== eps[0]) assert.equal(ep, owners[i]);
      else moved.set(ep.address, (moved.get(ep.address) ?? 0) + 1);
      assert.equal(pick(k), ep);
      // The retry after ep goes to a fixed third endpoint.
      const retry = pick(k, ep);
      assert.ok(retry !== ep && retry !== eps[0]);
      assert.equal(pick(k, ep), retry);
    });
    // Failover is spread, not dumped on one neighbour.
    assert.equal(moved.size, 4);
  });
}

Deno.test("hash keys: header, header: prefix, cookie, ip, and fallback to the client IP", () => {
  // Many endpoints make accidental agreement unlikely; compare against an explicit key.
  const built = new Map<string, ReturnType<typeof balancer>["lb"]>();
  const keyOf = (hash_key: string, req: ReturnType<typeof request>) => {
    let lb = built.get(hash_key);
    if (!lb) built.set(hash_key, lb = balancer(Array<number>(64).fill(1), { hash_key }).lb);
    return lb.pick(req)!.address;
  };
  const viaHeader = (value: string) => keyOf("X-User-ID", request("0.0.0.0", { "x-user-id": value }));
  const values = ["alice", "bob", "carol", "dave", "erin", "frank"];
  const expected = values.map(viaHeader);
  assert.ok(new Set(expected).size > 1);

  values.forEach((v, i) => {
    assert.equal(keyOf("header:x-user-id", request("0.0.0.0", { "X-User-ID": v })), expected[i]);
    assert.equal(keyOf("ip", request(v)), expected[i]);
    assert.equal(keyOf("", request(v)), expected[i]);
    // Header missing or empty → client IP.
    assert.equal(keyOf("X-User-ID", request(v)), expected[i]);
    assert.equal(keyOf("X-User-ID", request(v, { "x-user-id": "" })), expected[i]);
    for (const spec of ["cookie:session", "Cookie:session"]) {
      const cookies = [
        `session=${v}`,
        `a=1; session=${v}; b=2`,
        `sessionid=zzz;session = ${v} ;x=y`,
        `a=1, session="${v}"`,
      ];
      for (const c of cookies) {
        assert.equal(keyOf(spec, request("0.0.0.0", { cookie: c })), expected[i], c);
      }
      // Cookie absent, other cookies only, or empty → client IP.
      assert.equal(keyOf(spec, request(v)), expected[i]);
      assert.equal(keyOf(spec, request(v, { cookie: "sessionid=1; Session=2; xsession=3" })), expected[i]);
      assert.equal(keyOf(spec, request(v, { cookie: "session=; a=b" })), expected[i]);
    }
  });
});

Deno.test("hash keys: a prefix without a name is a config error", () => {
  assert.throws(() => balancer([1], { hash_key: "cookie:" }), /missing header or cookie name/);
});
