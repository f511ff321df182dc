/**
 * Power of two choices: draw two distinct endpoints at random (weighted) and
 * take the one with fewer requests in flight per unit of weight. Nearly as
 * balanced as least_conn, without a scan over all endpoints and without the
 * herd effect of every isolate choosing the same least loaded endpoint.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";
import { Draw } from "./draw.ts";

/** The less loaded of two random endpoints. */
export class P2cBalancer implements Balancer {
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

  /** The less loaded of two random available endpoints. */
  pick(_input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const eps = this.#endpoints;
    const draw = this.#draw;
    if (eps.length === 0) return null;
    let a = draw.any();
    if (!eps[a].available || eps[a] === exclude) {
      a = draw.eligible(exclude, -1);
      if (a < 0) return lastResort(eps, exclude);
    }
    if (eps.length === 1) return eps[a];
    let b = draw.anyExcept(a);
    if (!eps[b].available || eps[b] === exclude) {
      b = draw.eligible(exclude, a);
      if (b < 0) return eps[a];
    }
    // a's load/weight <= b's, without dividing; ties keep the first draw, so
    // idle traffic still follows the weights.
    return eps[a].inFlight * draw.weight(b) <= eps[b].inFlight * draw.weight(a) ? eps[a] : eps[b];
  }
}
