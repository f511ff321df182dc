/**
 * Smooth weighted round robin (nginx's algorithm): each pick adds every
 * endpoint's weight to its current value, takes the largest and subtracts the
 * total from it. Over a cycle of sum(weights) picks each endpoint gets exactly
 * its weight, spread out (5,1,1 → a a b a c a a) rather than in bursts.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";

/** nginx's smooth weighted round robin. */
export class WeightedBalancer implements Balancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #weights: Float64Array;
  readonly #current: Float64Array;

  /** @param endpoints the upstream's endpoints. */
  constructor(endpoints: readonly Endpoint[]) {
    this.#endpoints = endpoints;
    this.#weights = Float64Array.from(endpoints, (e) => e.weight);
    this.#current = new Float64Array(endpoints.length);
  }

  /** The endpoint whose turn it is among the available ones. */
  pick(_input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const eps = this.#endpoints;
    const w = this.#weights;
    const cur = this.#current;
    let best = -1;
    let total = 0;
    // Unavailable endpoints sit the round out with their current value frozen,
    // as nginx does for down peers.
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i];
      if (!ep.available || ep === exclude) continue;
      cur[i] += w[i];
      total += w[i];
      if (best < 0 || cur[i] > cur[best]) best = i;
    }
    if (best < 0) return lastResort(eps, exclude);
    cur[best] -= total;
    return eps[best];
  }
}
