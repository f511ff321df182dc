/**
 * Maglev lookup table (Eisenbud et al., NSDI 2016): each endpoint fills table
 * slots in the order of its own permutation of the table, taking turns, so the
 * slots are shared almost exactly evenly (or by weight) and removing one
 * endpoint reassigns little beyond its own slots. Lookup is one array read.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";
import { murmur3 } from "./hash.ts";

/** Default table size: a prime far above any realistic endpoint count (the paper wants M ≫ N). */
export const MAGLEV_TABLE_SIZE = 65537;

/** A Maglev lookup table of endpoint indices. */
export class MaglevTable {
  /** Endpoint index per slot; the narrowest array that fits, to keep tables small. */
  readonly #table: Uint8Array | Uint16Array | Uint32Array;

  /**
   * @param endpoints endpoints in a canonical order (the caller sorts them by address); at least one.
   * @param size table size; must be prime so every skip yields a full permutation.
   */
  constructor(endpoints: readonly Endpoint[], size: number = MAGLEV_TABLE_SIZE) {
    const n = endpoints.length;
    if (n === 0) throw new RangeError("MaglevTable: no endpoints");
    const table = n <= 0xff
      ? new Uint8Array(size)
      : n <= 0xffff
      ? new Uint16Array(size)
      : new Uint32Array(size);
    const filled = new Uint8Array(size);
    // Permutation of endpoint i: offset, offset + skip, offset + 2·skip, ... (mod size).
    const pos = new Float64Array(n);
    const skip = new Float64Array(n);
    // Weighted variant (as in Envoy): each round an endpoint earns weight/maxWeight
    // and claims a slot per whole unit earned, so the heaviest claims every round.
    const share = new Float64Array(n);
    const credit = new Float64Array(n);
    let maxWeight = 0;
    for (const ep of endpoints) maxWeight = Math.max(maxWeight, ep.weight);
    for (let i = 0; i < n; i++) {
      const address = endpoints[i].address;
      pos[i] = murmur3(address, 0, address.length, 0x9747b28c) % size;
      skip[i] = (murmur3(address, 0, address.length, 0x5bd1e995) % (size - 1)) + 1;
      share[i] = endpoints[i].weight / maxWeight;
    }
    let count = 0;
    while (count < size) {
      for (let i = 0; i < n && count < size; i++) {
        credit[i] += share[i];
        if (credit[i] < 1) continue;
        credit[i] -= 1;
        let c = pos[i];
        while (filled[c] === 1) {
          c += skip[i];
          if (c >= size) c -= size;
        }
        filled[c] = 1;
        table[c] = i;
        c += skip[i];
        pos[i] = c >= size ? c - size : c;
        count++;
      }
    }
    this.#table = table;
  }

  /** Table size. */
  get size(): number {
    return this.#table.length;
  }

  /** The slot of a key's hash. */
  start(hash: number): number {
    return hash % this.#table.length;
  }

  /** Endpoint index of slot `slot` (0 ≤ slot < size). */
  owner(slot: number): number {
    return this.#table[slot];
  }
}
