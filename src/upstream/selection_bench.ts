import type { LoadBalancerKind } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import { type Balancer, createBalancer } from "./selection.ts";
import { endpointsOf, mulberry32, request, upstreamConfig } from "./testutil.ts";

// 8 endpoints, mixed weights so the weighted paths are exercised.
const WEIGHTS = [1, 2, 1, 3, 1, 1, 2, 1];
const req = request("198.51.100.7", {
  "x-user-id": "user-8d1f2a",
  cookie: "theme=dark; session=abc123def456; lang=en",
});

function make(
  kind: LoadBalancerKind,
  hash: Parameters<typeof upstreamConfig>[2] = {},
): [Balancer, Endpoint[]] {
  const cfg = upstreamConfig(kind, WEIGHTS, hash);
  const eps = endpointsOf(cfg);
  // Some load for the in-flight based balancers to compare.
  eps.forEach((e, i) => {
    for (let k = 0; k < (i * 7) % 5; k++) e.begin();
  });
  return [createBalancer(cfg, eps, mulberry32(1)), eps];
}

const cases: [string, LoadBalancerKind, Parameters<typeof upstreamConfig>[2]?][] = [
  ["round_robin", "round_robin"],
  ["weighted", "weighted"],
  ["least_conn", "least_conn"],
  ["random", "random"],
  ["p2c", "p2c"],
  ["consistent_hash maglev ip", "consistent_hash", { algorithm: "maglev", hash_key: "ip" }],
  ["consistent_hash maglev header", "consistent_hash", { algorithm: "maglev", hash_key: "X-User-ID" }],
  ["consistent_hash maglev cookie", "consistent_hash", { algorithm: "maglev", hash_key: "cookie:session" }],
  ["consistent_hash ring header", "consistent_hash", { algorithm: "ring", hash_key: "X-User-ID" }],
];

for (const [name, kind, hash] of cases) {
  const [lb] = make(kind, hash);
  Deno.bench(`pick ${name} (8 endpoints)`, { group: "pick" }, () => {
    lb.pick(req);
  });
}

for (const [name, kind, hash] of cases) {
  const [lb, eps] = make(kind, hash);
  eps[3].healthy = false;
  Deno.bench(`pick ${name}, one down, excluding another`, { group: "pick with exclude" }, () => {
    lb.pick(req, eps[0]);
  });
}
