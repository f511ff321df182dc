/**
 * Consistent hashing: requests with the same key (header, cookie or client IP)
 * go to the same endpoint while the endpoint set is stable, and few keys move
 * when it changes. Two tables: a Maglev lookup table (default; one array read,
 * near-perfect balance) or a hash ring (`replicas` virtual nodes per endpoint).
 *
 * When the owner of a key is unavailable or excluded, the pick walks the table
 * forward from the key's position to the next eligible endpoint: deterministic,
 * so all isolates agree, and spread over the survivors because consecutive
 * table entries belong to different endpoints.
 *
 * @module
 */

import type { ConsistentHashConfig } from "../../config/types.ts";
import type { Endpoint } from "../endpoint.ts";
import type { Balancer, SelectInput } from "../selection.ts";
import { lastResort } from "./common.ts";
import { HashKey } from "./hash_key.ts";
import { MaglevTable } from "./maglev.ts";
import { RingTable } from "./ring.ts";

/** What the walk needs of a table: positions 0..size-1, each owned by an endpoint index. */
interface LookupTable {
  readonly size: number;
  /** The key's position. */
  start(hash: number): number;
  owner(pos: number): number;
}

// Table entries examined before falling back to a scan of the endpoints in
// order: bounds the cost when most endpoints are down.
const MAX_WALK = 64;

/** Consistent hashing over a Maglev table or a hash ring. */
export class ConsistentHashBalancer implements Balancer {
  readonly #all: readonly Endpoint[];
  /** Endpoints sorted by address: tables depend on the set, not on config order. */
  readonly #sorted: readonly Endpoint[];
  readonly #key: HashKey;
  readonly #table: LookupTable | null = null;

  /**
   * @param endpoints the upstream's endpoints.
   * @param cfg `hash_key`, `algorithm` (default maglev) and `replicas` (ring only).
   */
  constructor(endpoints: readonly Endpoint[], cfg: ConsistentHashConfig) {
    this.#all = endpoints;
    this.#sorted = [...endpoints].sort((
      a,
      b,
    ) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    this.#key = new HashKey(cfg.hash_key ?? "");
    if (endpoints.length === 0) return;
    this.#table = cfg.algorithm === "ring"
      ? new RingTable(this.#sorted, cfg.replicas ?? 150)
      : new MaglevTable(this.#sorted);
  }

  /** The endpoint owning the request's key, or the next eligible one after it. */
  pick(input: SelectInput, exclude?: Endpoint): Endpoint | null {
    const table = this.#table;
    if (table === null) return null;
    const eps = this.#sorted;
    const size = table.size;
    let pos = table.start(this.#key.hash(input));
    const first = table.owner(pos);
    let ep = eps[first];
    if (ep.available && ep !== exclude) return ep;
    const walk = Math.min(MAX_WALK, size - 1);
    for (let k = 0; k < walk; k++) {
      if (++pos === size) pos = 0;
      ep = eps[table.owner(pos)];
      if (ep.available && ep !== exclude) return ep;
    }
    const n = eps.length;
    for (let k = 1; k < n; k++) {
      ep = eps[(first + k) % n];
      if (ep.available && ep !== exclude) return ep;
    }
    return lastResort(this.#all, exclude);
  }
}
