/**
 * Weighted random draws of endpoint indices, shared by `random` and `p2c`.
 *
 * The fast path draws over all endpoints from precomputed prefix sums and the
 * caller checks availability; only when it hits an ineligible endpoint does
 * {@linkcode Draw.eligible} redraw over the eligible ones. The mixture of the two
 * is still exactly weight-proportional over the eligible endpoints.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";

/** Random endpoint indices, uniform or weight-proportional. */
export class Draw {
  readonly #endpoints: readonly Endpoint[];
  readonly #rand: () => number;
  /** Cumulative weights (prefix[i] = sum of weights before i); null when all weights are equal. */
  readonly #prefix: Float64Array | null;
  readonly #weights: Float64Array;
  readonly #total: number;

  /**
   * @param endpoints the upstream's endpoints.
   * @param rand uniform [0, 1) source.
   */
  constructor(endpoints: readonly Endpoint[], rand: () => number) {
    this.#endpoints = endpoints;
    this.#rand = rand;
    const n = endpoints.length;
    const uniform = endpoints.every((e) => e.weight === endpoints[0].weight);
    this.#weights = Float64Array.from(endpoints, (e) => (uniform ? 1 : e.weight));
    const prefix = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) prefix[i + 1] = prefix[i] + this.#weights[i];
    this.#total = prefix[n];
    this.#prefix = uniform ? null : prefix;
  }

  /** Weight used for the draws (1 for all when the weights are equal). */
  weight(i: number): number {
    return this.#weights[i];
  }

  /** A random index over all endpoints (there must be at least one). */
  any(): number {
    const prefix = this.#prefix;
    if (prefix === null) return Math.floor(this.#rand() * this.#endpoints.length);
    return this.#locate(prefix, this.#rand() * this.#total);
  }

  /** A random index over all endpoints except `skip` (there must be at least two). */
  anyExcept(skip: number): number {
    const prefix = this.#prefix;
    if (prefix === null) {
      const j = Math.floor(this.#rand() * (this.#endpoints.length - 1));
      return j >= skip ? j + 1 : j;
    }
    // Draw over the total without skip's weight, then step over skip's interval.
    let r = this.#rand() * (this.#total - this.#weights[skip]);
    if (r >= prefix[skip]) r += this.#weights[skip];
    return this.#locate(prefix, r);
  }

  /**
   * A random index over the available endpoints other than `exclude` and index
   * `skip` (-1 for none); -1 if there is none.
   */
  eligible(exclude: Endpoint | undefined, skip: number): number {
    const eps = this.#endpoints;
    const w = this.#weights;
    let total = 0;
    for (let i = 0; i < eps.length; i++) {
      if (i !== skip && eps[i].available && eps[i] !== exclude) total += w[i];
    }
    if (total === 0) return -1;
    let r = this.#rand() * total;
    let last = -1;
    for (let i = 0; i < eps.length; i++) {
      if (i === skip || !eps[i].available || eps[i] === exclude) continue;
      last = i;
      r -= w[i];
      if (r < 0) return i;
    }
    // Floating-point rounding can leave r at ~0 past the end: the last eligible one.
    return last;
  }

  /** Largest i with prefix[i] <= r, clamped to a valid index. */
  #locate(prefix: Float64Array, r: number): number {
    let lo = 0;
    let hi = prefix.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (prefix[mid] <= r) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
