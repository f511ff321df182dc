/**
 * Load balancers: choose an {@linkcode Endpoint} of an upstream per request.
 *
 * One file per algorithm under `selection/`; this file holds the contract and
 * the factory. Every balancer precomputes its tables at construction so that
 * `pick` allocates nothing, skips endpoints that are not
 * {@linkcode Endpoint.available}, avoids `exclude` (the endpoint a retry just
 * tried) unless it is the only one left, and returns null when nothing is
 * available (the caller answers 503).
 *
 * @module
 */

import type { UpstreamConfig } from "../config/types.ts";
import type { Endpoint } from "./endpoint.ts";
import { ConsistentHashBalancer } from "./selection/consistent_hash.ts";
import { LeastConnBalancer } from "./selection/least_conn.ts";
import { P2cBalancer } from "./selection/p2c.ts";
import { RandomBalancer } from "./selection/random.ts";
import { RoundRobinBalancer } from "./selection/round_robin.ts";
import { WeightedBalancer } from "./selection/weighted.ts";

/** What a balancer may read from the request. */
export interface SelectInput {
  /** A request header; names are passed lower-case, lookup should be case-insensitive. */
  header(name: string): string | undefined;
  /** The client's address, the consistent-hash fallback key. */
  clientIp: string;
}

/** A load-balancing algorithm over a fixed list of endpoints. */
export interface Balancer {
  /**
   * Chooses an endpoint for a request.
   * @param exclude an endpoint to avoid when any other is available (a retry's previous try).
   * @returns the endpoint, or null when none is available.
   */
  pick(input: SelectInput, exclude?: Endpoint): Endpoint | null;
}

/**
 * Builds the balancer `cfg.load_balancer` names over `endpoints`.
 * @param rand uniform [0, 1) source for `random` and `p2c` (tests pass a seeded one).
 */
export function createBalancer(
  cfg: UpstreamConfig,
  endpoints: Endpoint[],
  rand: () => number = Math.random,
): Balancer {
  switch (cfg.load_balancer) {
    case "round_robin":
      return new RoundRobinBalancer(endpoints);
    case "weighted":
      return new WeightedBalancer(endpoints);
    case "least_conn":
      return new LeastConnBalancer(endpoints);
    case "random":
      return new RandomBalancer(endpoints, rand);
    case "p2c":
      return new P2cBalancer(endpoints, rand);
    case "consistent_hash":
      return new ConsistentHashBalancer(endpoints, cfg.consistent_hash);
    default:
      throw new Error(`upstream ${cfg.name}: unknown load_balancer "${cfg.load_balancer as string}"`);
  }
}
