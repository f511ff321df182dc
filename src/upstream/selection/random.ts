/**
 * Random: uniform over the available endpoints, or weight-proportional when
 * the weights differ.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";
import { Draw } from "./draw.ts";

/** Picks an available endpoint at random (weighted). */
export class RandomBalancer implements Balancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #draw: Draw;

  /**
   * @param endpoints the upstream's endpoints.
   * @param rand uniform [0, 1) source.
   */
  constructor(endpoints: readonly Endpoint[], rand: () => number) {
    this.#endpoints = endpoints;
    this.#draw = new Draw(endpoints, rand);
  }

  /** A random available endpoint. */
  pick(_input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const eps = this.#endpoints;
    if (eps.length === 0) return null;
    let i = this.#draw.any();
    if (!eps[i].available || eps[i] === exclude) {
      i = this.#draw.eligible(exclude, -1);
      if (i < 0) return lastResort(eps, exclude);
    }
    return eps[i];
  }
}
