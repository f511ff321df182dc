/**
 * Test helpers for the upstream tests (not used by the gateway).
 *
 * @module
 */

import type { ConsistentHashConfig, LoadBalancerKind, UpstreamConfig } from "../config/types.ts";
import { Endpoint } from "./endpoint.ts";
import type { SelectInput } from "./selection.ts";

/** mulberry32: a tiny seeded PRNG, uniform on [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An upstream config with endpoints 10.0.0.<i+1>:80 of the given weights. */
export function upstreamConfig(
  kind: LoadBalancerKind,
  weights: number[],
  hash: Partial<ConsistentHashConfig> = {},
  name = "api",
): UpstreamConfig {
  return {
    name,
    endpoints: weights.map((weight, i) => ({
      address: `10.0.0.${i + 1}:80`,
      hostname: `10.0.0.${i + 1}`,
      port: 80,
      weight,
    })),
    load_balancer: kind,
    panic_threshold: 50,
    consistent_hash: { hash_key: "", replicas: 150, algorithm: "maglev", ...hash },
    pool: { max_idle: 128, idle_timeout: 60_000, max_connections: 0 },
    connect_timeout: 5_000,
    per_try_timeout: 30_000,
  };
}

/** Endpoints of `cfg` over a fresh local counter array (slot = index). */
export function endpointsOf(cfg: UpstreamConfig): Endpoint[] {
  // Shared memory, as in the gateway (Atomics cost differs from plain memory).
  const counters = new Int32Array(new SharedArrayBuffer(4 * (cfg.endpoints.length || 1)));
  return cfg.endpoints.map((e, i) => new Endpoint(e, counters, i));
}

/** A request with the given client IP and headers (stored lower-case). */
export function request(clientIp: string, headers: Record<string, string> = {}): SelectInput {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  // No lower-casing here: balancers must pass lower-case names.
  return { clientIp, header: (name) => h.get(name) };
}

/** Counts picks per endpoint address over `n` picks. */
export function tally(n: number, pick: () => Endpoint | null): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const ep = pick();
    const key = ep === null ? "null" : ep.address;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
