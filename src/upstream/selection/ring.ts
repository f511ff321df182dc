/**
 * Ketama-style hash ring: `replicas × weight` virtual nodes per endpoint on a
 * sorted 32-bit ring; a key belongs to the first node at or after its hash.
 * Removing an endpoint moves only the keys it owned.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import { murmur3 } from "./hash.ts";

/** A sorted ring of virtual nodes: {@linkcode RingTable.start} finds a key's node, {@linkcode RingTable.owner} its endpoint. */
export class RingTable {
  /** Node hashes, ascending. */
  readonly #points: Uint32Array;
  /** Endpoint index of each node. */
  readonly #owners: Uint32Array;

  /**
   * @param endpoints endpoints in a canonical order (the caller sorts them by address).
   * @param replicas virtual nodes per unit of weight.
   */
  constructor(endpoints: readonly Endpoint[], replicas: number) {
    const hashes: number[] = [];
    const owners: number[] = [];
    const per = Math.max(1, Math.floor(replicas) || 1);
    endpoints.forEach((ep, idx) => {
      const count = Math.max(1, Math.round(per * ep.weight));
      for (let r = 0; r < count; r++) {
        hashes.push(murmur3(`${ep.address}-${r}`));
        owners.push(idx);
      }
    });
    // Stable sort: equal hashes keep the canonical endpoint order, so every
    // isolate builds the same ring.
    const order = hashes.map((_, i) => i).sort((a, b) => hashes[a] - hashes[b]);
    this.#points = Uint32Array.from(order, (i) => hashes[i]);
    this.#owners = Uint32Array.from(order, (i) => owners[i]);
  }

  /** Number of virtual nodes. */
  get size(): number {
    return this.#points.length;
  }

  /** Index of the first node at or after `hash`, wrapping around. */
  start(hash: number): number {
    const points = this.#points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  /** Endpoint index of node `pos`. */
  owner(pos: number): number {
    return this.#owners[pos];
  }
}
