/**
 * Least connections: the endpoint with the fewest requests in flight relative
 * to its weight (inFlight / weight), counted over all isolates.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";

/** Fewest in-flight requests per unit of weight; ties go round robin. */
export class LeastConnBalancer implements Balancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #weights: Float64Array;
  #start = 0;

  /** @param endpoints the upstream's endpoints. */
  constructor(endpoints: readonly Endpoint[]) {
    this.#endpoints = endpoints;
    this.#weights = Float64Array.from(endpoints, (e) => e.weight);
  }

  /** The least loaded available endpoint. */
  pick(_input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const eps = this.#endpoints;
    const w = this.#weights;
    const n = eps.length;
    let best = -1;
    let bestConns = 0;
    let bestWeight = 1;
    // Scanning from a rotating start with a strict comparison breaks ties by
    // rotation; always starting at 0 would pile idle traffic on the first endpoint.
    let i = this.#start;
    for (let k = 0; k < n; k++) {
      const ep = eps[i];
      if (ep.available && ep !== exclude) {
        const conns = ep.inFlight;
        // conns/w < bestConns/bestWeight without dividing.
        if (best < 0 || conns * bestWeight < bestConns * w[i]) {
          best = i;
          bestConns = conns;
          bestWeight = w[i];
        }
      }
      if (++i === n) i = 0;
    }
    if (best < 0) return lastResort(eps, exclude);
    this.#start = best + 1 === n ? 0 : best + 1;
    return eps[best];
  }
}
