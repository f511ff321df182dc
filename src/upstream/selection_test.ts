import assert from "node:assert/strict";
import type { LoadBalancerKind } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import { createBalancer } from "./selection.ts";
import { endpointsOf, mulberry32, request, tally, upstreamConfig } from "./testutil.ts";

const req = request("192.0.2.1");
const KINDS: LoadBalancerKind[] = [
  "round_robin",
  "weighted",
  "least_conn",
  "random",
  "p2c",
  "consistent_hash",
];

function setup(kind: LoadBalancerKind, weights: number[], seed = 1) {
  const cfg = upstreamConfig(kind, weights);
  const eps = endpointsOf(cfg);
  return { eps, lb: createBalancer(cfg, eps, mulberry32(seed)) };
}

function letters(eps: Endpoint[], picked: (Endpoint | null)[]): string {
  return picked.map((e) => (e === null ? "-" : "abcdefgh"[eps.indexOf(e)])).join("");
}

Deno.test("round_robin: exactly even rotation, skipping unavailable endpoints", () => {
  const { eps, lb } = setup("round_robin", [1, 5, 1, 1]);
  const counts = tally(4000, () => lb.pick(req));
  for (const e of eps) assert.equal(counts.get(e.address), 1000);
  eps[1].healthy = false;
  const seq = Array.from({ length: 6 }, () => lb.pick(req));
  assert.equal(letters(eps, seq), "acdacd");
});

Deno.test("weighted: nginx smooth sequence and exact proportions", () => {
  const { eps, lb } = setup("weighted", [5, 1, 1]);
  const seq = Array.from({ length: 14 }, () => lb.pick(req));
  assert.equal(letters(eps, seq), "aabacaa".repeat(2));
  const w = setup("weighted", [3, 2, 1, 4]);
  const counts = tally(1000, () => w.lb.pick(req));
  assert.deepEqual(w.eps.map((e) => counts.get(e.address)), [300, 200, 100, 400]);
  w.eps[3].draining = true;
  const rest = tally(600, () => w.lb.pick(req));
  assert.deepEqual(w.eps.map((e) => rest.get(e.address) ?? 0), [300, 200, 100, 0]);
});

Deno.test("least_conn: prefers fewer in-flight per weight, ties by rotation", () => {
  const { eps, lb } = setup("least_conn", [1, 1, 1]);
  // Idle: rotation, not always the first.
  assert.equal(letters(eps, [lb.pick(req), lb.pick(req), lb.pick(req)]), "abc");
  eps[0].begin();
  eps[0].begin();
  eps[1].begin();
  assert.equal(lb.pick(req), eps[2]);
  eps[2].begin();
  eps[2].begin();
  assert.equal(lb.pick(req), eps[1]);
  // Keep picked requests in flight: counts level out.
  const live = setup("least_conn", [1, 1, 1, 1]);
  for (let i = 0; i < 400; i++) live.lb.pick(req)!.begin();
  assert.deepEqual(live.eps.map((e) => e.inFlight), [100, 100, 100, 100]);
  // Weights: 3:1 in flight is balanced for weights 3:1.
  const w = setup("least_conn", [3, 1]);
  for (let i = 0; i < 400; i++) w.lb.pick(req)!.begin();
  assert.deepEqual(w.eps.map((e) => e.inFlight), [300, 100]);
});

Deno.test("random: uniform within tolerance, weighted when weights differ", () => {
  const { eps, lb } = setup("random", [1, 1, 1, 1, 1]);
  const n = 100_000;
  const counts = tally(n, () => lb.pick(req));
  for (const e of eps) {
    assert.ok(Math.abs(counts.get(e.address)! / n - 0.2) < 0.01, `${counts.get(e.address)}`);
  }
  const w = setup("random", [1, 2, 7]);
  const wc = tally(n, () => w.lb.pick(req));
  [0.1, 0.2, 0.7].forEach((p, i) => assert.ok(Math.abs(wc.get(w.eps[i].address)! / n - p) < 0.01));
  // Unavailable endpoints: uniform over the rest.
  eps[0].healthy = false;
  eps[3].draining = true;
  const rest = tally(n, () => lb.pick(req));
  assert.equal(rest.get(eps[0].address), undefined);
  assert.equal(rest.get(eps[3].address), undefined);
  for (const i of [1, 2, 4]) assert.ok(Math.abs(rest.get(eps[i].address)! / n - 1 / 3) < 0.01);
});

Deno.test("p2c: prefers the less loaded endpoint", () => {
  const { eps, lb } = setup("p2c", [1, 1, 1, 1]);
  for (let i = 0; i < 10; i++) eps[0].begin();
  const counts = tally(10_000, () => lb.pick(req));
  // eps[0] only wins when both draws are eps[0], which distinct draws rule out.
  assert.equal(counts.get(eps[0].address), undefined);
  for (const e of eps.slice(1)) assert.ok(Math.abs(counts.get(e.address)! / 10_000 - 1 / 3) < 0.02);
  // Picks kept in flight stay close to balanced.
  const live = setup("p2c", [1, 1, 1, 1, 1, 1, 1, 1], 7);
  for (let i = 0; i < 8000; i++) live.lb.pick(req)!.begin();
  const loads = live.eps.map((e) => e.inFlight);
  assert.ok(Math.max(...loads) - Math.min(...loads) <= 4, `${loads}`);
  // Idle with weights: the draws follow the weights.
  const w = setup("p2c", [3, 1]);
  const wc = tally(20_000, () => w.lb.pick(req));
  assert.ok(Math.abs(wc.get(w.eps[0].address)! / 20_000 - 0.75) < 0.02);
});

for (const kind of KINDS) {
  Deno.test(`${kind}: exclude, unavailable endpoints, all unavailable → null`, () => {
    const { eps, lb } = setup(kind, [1, 2, 1, 1], 3);
    for (let i = 0; i < 200; i++) {
      const first = lb.pick(request(`10.1.${i >> 8}.${i & 255}`))!;
      const retry = lb.pick(request(`10.1.${i >> 8}.${i & 255}`), first);
      assert.ok(retry !== null && retry !== first, "retry avoids the excluded endpoint");
    }
    eps[0].healthy = false;
    eps[2].draining = true;
    for (let i = 0; i < 200; i++) {
      const ep = lb.pick(request(`10.2.0.${i}`));
      assert.ok(ep === eps[1] || ep === eps[3]);
    }
    // Only the excluded endpoint is left: retrying it beats a 503.
    eps[3].healthy = false;
    assert.equal(lb.pick(req, eps[1]), eps[1]);
    assert.equal(lb.pick(req, eps[0]), eps[1]);
    eps[1].draining = true;
    assert.equal(lb.pick(req), null);
    assert.equal(lb.pick(req, eps[1]), null);
    // An empty upstream also answers null.
    assert.equal(setup(kind, []).lb.pick(req), null);
  });
}

Deno.test("createBalancer: unknown kind throws", () => {
  const cfg = upstreamConfig("round_robin", [1]);
  assert.throws(() =>
    createBalancer({ ...cfg, load_balancer: "fastest" as LoadBalancerKind }, endpointsOf(cfg))
  );
});
