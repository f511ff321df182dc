/**
 * Round robin: strict rotation over the available endpoints, ignoring weights.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";

/** Rotates over the endpoints, skipping unavailable ones. */
export class RoundRobinBalancer implements Balancer {
  readonly #endpoints: readonly Endpoint[];
  #next = 0;

  /** @param endpoints the upstream's endpoints. */
  constructor(endpoints: readonly Endpoint[]) {
    this.#endpoints = endpoints;
  }

  /** The next available endpoint after the previous pick. */
  pick(_input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const eps = this.#endpoints;
    const n = eps.length;
    let i = this.#next;
    for (let k = 0; k < n; k++) {
      const ep = eps[i];
      if (++i === n) i = 0;
      if (ep.available && ep !== exclude) {
        // Resuming after the picked one (not after the cursor) keeps the rotation
        // fair when endpoints are skipped.
        this.#next = i;
        return ep;
      }
    }
    return lastResort(eps, exclude);
  }
}
